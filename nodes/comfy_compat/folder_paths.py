"""ComfyUI's `folder_paths` API over NodeWeaver's configured folders."""

from __future__ import annotations

from runtime import folders

supported_pt_extensions = set(folders.MODEL_EXTENSIONS)


def get_filename_list(folder_name: str) -> list[str]:
    return folders.model_files(folder_name)


def get_full_path(folder_name: str, filename: str) -> str | None:
    path = folders.model_path(folder_name, filename)
    return str(path) if path else None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    path = get_full_path(folder_name, filename)
    if path is None:
        raise FileNotFoundError(f"Model in folder '{folder_name}' with filename '{filename}' not found.")
    return path


def get_folder_paths(folder_name: str) -> list[str]:
    return [str(path) for path in folders.model_folders(folder_name)]


def map_legacy(folder_name: str) -> str:
    return folders.canonical_kind(folder_name)


def get_input_directory() -> str:
    return str(folders.input_dir())


def get_output_directory() -> str:
    return str(folders.output_dir())


def get_temp_directory() -> str:
    return str(folders.temp_dir())


def get_annotated_filepath(name: str) -> str:
    return str(folders.input_path(name.removesuffix(" [input]")))


def exists_annotated_filepath(name: str) -> bool:
    try:
        return folders.input_path(name.removesuffix(" [input]")).exists()
    except folders.UnsafePathError:
        return False


def get_save_image_path(filename_prefix: str, output_dir: str, image_width: int = 0, image_height: int = 0):
    """ComfyUI's signature: (full_output_folder, filename, counter, subfolder, filename_prefix)."""
    from pathlib import Path

    root = Path(output_dir)
    target = folders.safe_join(root, filename_prefix + "_")
    subfolder = target.parent.relative_to(root.resolve()).as_posix()
    subfolder = "" if subfolder == "." else subfolder
    filename = Path(filename_prefix).name
    target.parent.mkdir(parents=True, exist_ok=True)
    counter = 1
    for existing in target.parent.glob(f"{filename}_*"):
        digits = existing.stem[len(filename) + 1:].split("_")[0]
        if digits.isdigit():
            counter = max(counter, int(digits) + 1)
    return str(target.parent), filename, counter, subfolder, filename_prefix
