"""The shipped models: where `weights/` is (`manifest`), reading and writing its hash-checked
safetensors files (`files`), and building each model from them once per process (`loading`: the
codec, and each τ decoder's module on the codec it was trained for)."""
