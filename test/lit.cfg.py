# -*- Python -*-
# lit configuration of the qopt regression tests.

import os

import lit.formats
from lit.llvm import llvm_config
from lit.llvm.subst import ToolSubst

config.name = "QOPT"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test", ".onnxtext"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.qopt_obj_root, "test")
# Unit/ has its own GoogleTest configuration.
config.excludes = ["Unit", "Inputs", "lib", "CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py"]

config.substitutions.append(("%qopt_src_root", config.qopt_src_root))
config.substitutions.append(("%qopt_obj_root", config.qopt_obj_root))
# The project venv's Python (numpy, onnx, onnxruntime) for test inputs and
# reference checks.
config.substitutions.append(("%python", config.python_executable))

llvm_config.with_system_environment(["HOME", "INCLUDE", "LIB", "TMP", "TEMP"])
llvm_config.use_default_substitutions()

tool_dirs = [config.qopt_tools_dir, config.llvm_tools_dir]
tools = ["qopt-opt", "qopt-translate", "qoptc", "qopt-run", "qopt-train"]
llvm_config.add_tool_substitutions(tools, tool_dirs)
llvm_config.with_environment("PATH", config.qopt_tools_dir, append_path=True)
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)

# The importer fuzzer is built with -DQOPT_ENABLE_FUZZER=ON (scripts/build.sh).
if os.path.exists(os.path.join(config.qopt_tools_dir, "import-onnx-fuzzer")):
    config.available_features.add("fuzzer")
# The Python package is built with -DQOPT_ENABLE_PYTHON=ON (scripts/build.sh).
if os.path.isdir(os.path.join(config.qopt_obj_root, "python", "qopt")):
    config.available_features.add("python-binding")
# The CUDA toolkit's ptxas (the one CMake found beside nvcc, or /usr/local/cuda's;
# scripts/setup.sh installs NVIDIA's wheels where there is none): tests that
# assemble generated PTX need it, the PTX generation itself does not.
ptxas = os.environ.get("QOPT_PTXAS") or config.qopt_ptxas
if not ptxas or not os.access(ptxas, os.X_OK):
    ptxas = "/usr/local/cuda/bin/ptxas"
if os.access(ptxas, os.X_OK):
    config.available_features.add("ptxas")
    config.substitutions.append(("%ptxas", ptxas))
    # gpu-module-to-binary finds libdevice (and ptxas) through CUDA_ROOT.
    config.environment["CUDA_ROOT"] = os.path.dirname(os.path.dirname(ptxas))
# The CUDA kernel library's cubins (lib/Runtime/Kernels/CUDA), built where CMake
# found nvcc (check-qopt builds them first).
cuda_archs = [a for a in config.qopt_cuda_archs.split(";") if a]
if config.qopt_cuda_kernels and cuda_archs:
    config.available_features.add("cuda-kernels")
    config.substitutions.append(("%cuda_archs", " ".join(cuda_archs)))
