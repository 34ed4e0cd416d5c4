# The CUDA toolkit (nvcc, ptxas, fatbinary, nvvm/libdevice): for the CUDA
# kernel library (lib/Runtime/Kernels/CUDA) and for `qoptc --target cuda`,
# which compiles the generated kernels' PTX to cubins. Found in
# QOPT_CUDA_ROOT, on the PATH, in /usr/local/cuda, or as NVIDIA's nvcc
# wheels in the Python venv (scripts/setup.sh installs them where no toolkit
# is present). Without one neither is available and the tests that need
# them are unsupported.
set(QOPT_CUDA_ARCHS "sm_80;sm_90;sm_100" CACHE STRING
  "GPU architectures the CUDA kernel library and compiled models are built for")
set(pip_bins)
if(Python3_EXECUTABLE)
  get_filename_component(venv_bin "${Python3_EXECUTABLE}" DIRECTORY)
  file(GLOB pip_bins "${venv_bin}/../lib/python3*/site-packages/nvidia/cu13/bin")
endif()
find_program(QOPT_NVCC nvcc
  HINTS ${QOPT_CUDA_ROOT} $ENV{QOPT_CUDA_ROOT}
  PATHS /usr/local/cuda ${pip_bins}
  PATH_SUFFIXES bin)
set(QOPT_CUDA_TOOLKIT "")
if(QOPT_NVCC)
  get_filename_component(nvcc_dir "${QOPT_NVCC}" DIRECTORY)
  get_filename_component(QOPT_CUDA_TOOLKIT "${nvcc_dir}/.." ABSOLUTE)
  set(QOPT_PTXAS "${nvcc_dir}/ptxas" CACHE FILEPATH "The toolkit's ptxas")
endif()
string(REPLACE ";" "," QOPT_CUDA_ARCHS_LIST "${QOPT_CUDA_ARCHS}")
