"""Export: ONNX (fp32, fp16, int8 QDQ), OpenVINO IR, TensorRT engines, a Triton model repository and
the manifest that describes them. `manifest` is torch-free: the runtime reads it."""
