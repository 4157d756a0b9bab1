// NodeWeaver's "Describe" sidebar for ComfyUI's frontend: words (Chinese or English) → POST /api/plan → the
// planned graph on the canvas. Questions show their choices (a click plans again with the answer), the parts
// of the request the graph leaves out and the planner's notes are listed, validation errors are marked on
// their nodes, and "Run" queues the graph with the frontend's own queue, so progress and images show as usual.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const TAB_ID = "nodeweaver-describe";
const ERROR_COLOR = "#a33";
const ERROR_BGCOLOR = "#522";

// The panel's state outlives its DOM: the frontend builds the tab's element anew each time it opens.
const state = {
  request: "",
  answers: {},
  result: null,
  busy: false,
  message: "",
  editCurrent: false,
  marked: [],
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

async function postJson(route, body) {
  const response = await api.fetchApi(route, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  return { ok: response.ok, status: response.status, data };
}

function errorText(data, status) {
  const error = data?.error;
  if (error && typeof error === "object") return `${error.message || error.type} (${status})`;
  return `the server answered ${status}`;
}

// ---- the graph -----------------------------------------------------------------------------------------
let canConvert = null; // whether the server turns API JSON into the UI form (with its layered layout)

async function serverConverts() {
  if (canConvert === null) {
    const features = await api.fetchApi("/features").then((r) => r.json()).catch(() => ({}));
    canConvert = features?.nodeweaver_ui_convert === true;
  }
  return canConvert;
}

async function showWorkflow(workflow) {
  const converted = (await serverConverts()) ? await postJson("/ui/convert", { workflow }) : null;
  if (converted?.ok && converted.data?.workflow) {
    await app.loadGraphData(converted.data.workflow, true, true, "NodeWeaver plan");
  } else {
    app.loadApiJson(workflow, "NodeWeaver plan");
  }
  app.graph.setDirtyCanvas(true, true);
}

function clearMarks() {
  for (const mark of state.marked) {
    const node = app.graph?.getNodeById(mark.id);
    if (!node) continue;
    node.color = mark.color;
    node.bgcolor = mark.bgcolor;
    node.has_errors = false;
  }
  state.marked = [];
}

function markErrors(errors) {
  clearMarks();
  for (const error of errors) {
    if (error.node_id === null || error.node_id === undefined) continue;
    const node = app.graph?.getNodeById(error.node_id) ?? app.graph?.getNodeById(Number(error.node_id));
    if (!node || state.marked.some((m) => m.id === node.id)) continue;
    state.marked.push({ id: node.id, color: node.color, bgcolor: node.bgcolor });
    node.color = ERROR_COLOR;
    node.bgcolor = ERROR_BGCOLOR;
    node.has_errors = true;
  }
  app.graph?.setDirtyCanvas(true, true);
}

// ---- planning and running ------------------------------------------------------------------------------
async function plan(panel) {
  if (!state.request.trim() || state.busy) return;
  state.busy = true;
  state.message = "Planning…";
  render(panel);
  try {
    const body = { request: state.request, answers: state.answers };
    if (state.editCurrent && app.graph?._nodes?.length) body.workflow = (await app.graphToPrompt()).output;
    const reply = await postJson("/plan", body);
    if (!reply.ok) {
      state.result = null;
      state.message = `Planning failed: ${errorText(reply.data, reply.status)}`;
      return;
    }
    state.result = reply.data;
    state.message = `${reply.data.status}: ${reply.data.summary || ""}`;
    if (reply.data.workflow) await showWorkflow(reply.data.workflow);
    markErrors(reply.data.errors || []);
  } catch (error) {
    state.message = `Planning failed: ${error}`;
  } finally {
    state.busy = false;
    render(panel);
  }
}

async function run(panel) {
  if (state.busy) return;
  state.message = "Queued with ComfyUI's queue: progress shows on the nodes, images in the queue.";
  render(panel);
  try {
    await app.queuePrompt(0, 1);
  } catch (error) {
    state.message = `Could not queue the graph: ${error}`;
    render(panel);
  }
}

function answer(panel, slot, choice) {
  state.answers = { ...state.answers, [slot]: choice };
  plan(panel);
}

// ---- the panel -----------------------------------------------------------------------------------------
function questionView(panel, question) {
  const slot = question.slot || "answer";
  const choices = (question.choices || []).map((choice) =>
    el("button", { class: "p-button p-button-sm p-button-outlined nw-choice", "data-choice": choice,
                   style: { margin: "2px" }, onclick: () => answer(panel, slot, choice) }, choice));
  const typed = el("input", { class: "p-inputtext p-inputtext-sm nw-answer", placeholder: "your answer",
                              style: { width: "100%", marginTop: "4px" } });
  const send = el("button", { class: "p-button p-button-sm nw-answer-send", style: { marginTop: "4px" },
                              onclick: () => typed.value.trim() && answer(panel, slot, typed.value.trim()) },
                  "Answer");
  return el("div", { class: "nw-question", style: { margin: "8px 0" } },
            el("div", { style: { fontWeight: "bold" } }, question.text), choices, typed, send);
}

function listView(title, className, items, line) {
  if (!items?.length) return null;
  return el("div", { class: className, style: { margin: "8px 0" } },
            el("div", { style: { fontWeight: "bold" } }, title),
            el("ul", { style: { paddingLeft: "1.2em", margin: "4px 0" } }, items.map((i) => el("li", {}, line(i)))));
}

function resultView(panel) {
  const result = state.result;
  if (!result) return null;
  return el("div", { class: "nw-result" },
    result.question ? questionView(panel, result.question) : null,
    listView("Not covered / 未覆盖", "nw-not-covered", result.not_covered,
             (p) => `${p.what || p.stage || p.kind}: ${p.reason || ""}${p.suggestion ? ` (${p.suggestion})` : ""}`),
    listView("Errors / 错误", "nw-errors", result.errors,
             (e) => `${e.node_id ? `node ${e.node_id}: ` : ""}${e.message || e.type}`),
    listView("Notes / 说明", "nw-notes", result.notes, (n) => n));
}

function render(panel) {
  panel.replaceChildren();
  const text = el("textarea", { class: "p-textarea nw-request", rows: "5",
                                placeholder: "Describe the workflow, e.g. 一只猫坐在沙发上 / a cat on a sofa, upscaled 2x",
                                style: { width: "100%", resize: "vertical" } });
  text.value = state.request;
  text.addEventListener("input", () => { state.request = text.value; state.answers = {}; });
  const edit = el("input", { type: "checkbox", class: "nw-edit" });
  edit.checked = state.editCurrent;
  edit.addEventListener("change", () => { state.editCurrent = edit.checked; });
  const planButton = el("button", { class: "p-button p-button-sm nw-plan", onclick: () => plan(panel) }, "Plan / 规划");
  const runButton = el("button", { class: "p-button p-button-sm p-button-success nw-run", style: { marginLeft: "6px" },
                                   onclick: () => run(panel) }, "Run / 运行");
  planButton.disabled = state.busy;
  runButton.disabled = state.busy || !app.graph?._nodes?.length;
  panel.append(
    el("div", { style: { padding: "8px", display: "flex", flexDirection: "column", gap: "6px" } },
       el("div", { style: { fontWeight: "bold", fontSize: "1.1em" } }, "Describe / 描述"), text,
       el("label", { style: { fontSize: "0.9em" } }, edit, " edit the graph on the canvas / 修改当前画布"),
       el("div", {}, planButton, runButton),
       el("div", { class: "nw-status", style: { fontSize: "0.9em", opacity: "0.85" } }, state.message),
       resultView(panel)));
}

// ComfyUI's frontend maps model folders to these loader classes and, when one is missing from /object_info,
// its model-to-node store throws, which breaks every combo widget of a model input (ckpt_name …). A server
// whose catalog lacks some of them gets a hidden (deprecated) stand-in per missing class, so the page works;
// the server still refuses a graph that uses one, naming it.
const FRONTEND_MODEL_LOADERS = {
  CheckpointLoaderSimple: "ckpt_name", ImageOnlyCheckpointLoader: "ckpt_name", LoraLoader: "lora_name",
  LoraLoaderModelOnly: "lora_name", VAELoader: "vae_name", ControlNetLoader: "control_net_name",
  UNETLoader: "unet_name", UpscaleModelLoader: "model_name", StyleModelLoader: "style_model",
  GLIGENLoader: "gligen_name",
};

function addMissingLoaderStandIns(defs) {
  for (const [name, input] of Object.entries(FRONTEND_MODEL_LOADERS)) {
    if (defs[name]) continue;
    defs[name] = {
      name, display_name: `${name} (not on this server)`, category: "loaders", python_module: "nodeweaver",
      description: "Not available on this NodeWeaver server; listed only so the frontend's model browser works.",
      input: { required: { [input]: [[]] } }, input_order: { required: [input] },
      output: [], output_name: [], output_is_list: [], output_node: false, deprecated: true,
    };
  }
}

app.registerExtension({
  name: "NodeWeaver.Describe",
  addCustomNodeDefs(defs) {
    addMissingLoaderStandIns(defs);
  },
  setup() {
    app.extensionManager.registerSidebarTab({
      id: TAB_ID,
      icon: "pi pi-comment",
      title: "Describe",
      tooltip: "NodeWeaver: describe a workflow in words",
      type: "custom",
      render: (element) => {
        const panel = el("div", { class: "nw-describe", style: { height: "100%", overflowY: "auto" } });
        element.append(panel);
        render(panel);
      },
    });
  },
});
