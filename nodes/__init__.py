"""What a node is (spec), which nodes exist (registry, packs) and where their files live (folders)."""
