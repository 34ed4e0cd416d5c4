//===- CompiledModel.h - The compiled-model format --------------*- C++ -*-===//
//
// The contract between the CPU target (which writes model.so, its manifest
// and model.safetensors) and the runtime (which loads them): symbol names,
// manifest keys and values, the ABI version and the element-type table.
// Plain C++, no MLIR or LLVM: both sides include this one header, so a
// name cannot drift between them.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_SUPPORT_COMPILEDMODEL_H
#define QOPT_SUPPORT_COMPILEDMODEL_H

#include <cstddef>
#include <cstring>

namespace qopt::compiled_model {

/// Bumped whenever the entry's calling convention or the manifest changes
/// incompatibly; the runtime refuses other versions.
/// 3: mutable parameters (roles, updates as extra results) and the
/// random-key argument. 4: the device checks' status word (kChecks).
inline constexpr int kABIVersion = 4;

/// Symbols of model.so.
/// The manifest (JSON, NUL-terminated) in a loaded segment.
inline constexpr char kManifestSymbol[] = "qopt_manifest";
/// `int qopt_run_checked(void **args, const char **error)`: runs the model;
/// a failed run-time check returns non-zero with its message. `args` holds
/// the results (the outputs, then the new values of the parameters listed
/// under kUpdates) and then the arguments (the inputs, the parameters in
/// manifest order, then the random key `[seed, counter]` (int64) when
/// kRNGKey is true, then the status word when kChecks is present), each a
/// memref descriptor.
inline constexpr char kEntrySymbol[] = "qopt_run_checked";
/// The unchecked packed entry the checked one wraps.
inline constexpr char kPackedEntrySymbol[] = "qopt_run_packed";
/// A model with several entries (a train step, an eval step, a gradient
/// function: kEntries) has the first under kEntrySymbol and each one under
/// kEntrySymbol + "_" + its name; all take the same arguments.
/// From the kernel library linked into every model.
inline constexpr char kSetThreadsSymbol[] = "qopt_kernel_set_num_threads";
inline constexpr char kRunGuardedSymbol[] = "qopt_kernel_run_guarded";
inline constexpr char kCheckFailedSymbol[] = "qopt_kernel_check_failed";
/// What generated code allocates and frees buffers with (aligned_alloc /
/// free, tracked so that a failed check frees the run's buffers).
inline constexpr char kAlignedAllocSymbol[] = "qopt_kernel_aligned_alloc";
inline constexpr char kFreeSymbol[] = "qopt_kernel_free";
/// Kernels generated code calls (lib/Runtime/Kernels/CPU/Kernels.cpp).
inline constexpr char kSgemmSymbol[] = "qopt_kernel_sgemm";
inline constexpr char kQLinearSymbol[] = "qopt_kernel_qlinear";
/// Runs an outlined loop body over the kernel pool's threads
/// (qopt-parallel-to-pool).
inline constexpr char kParallelForSymbol[] = "qopt_kernel_parallel_for";
/// How many of those loops ran on the pool and on the calling thread.
inline constexpr char kLoopCountsSymbol[] = "qopt_kernel_loop_counts";
/// The CPU's name and the quantized products' code path (QLinear.cpp).
inline constexpr char kCPUNameSymbol[] = "qopt_kernel_cpu_name";
inline constexpr char kCPUPathSymbol[] = "qopt_kernel_cpu_path";
/// The read-only weights mapping, registered at load and released before
/// it is unmapped: products pack the weights inside it once (PackedGemm.cpp).
inline constexpr char kRegisterConstantSymbol[] =
    "qopt_kernel_register_constant";
inline constexpr char kReleaseConstantSymbol[] = "qopt_kernel_release_constant";
/// The f32 products' code path ("avx512" or "openblas"; PackedGemm.cpp).
inline constexpr char kF32PathSymbol[] = "qopt_kernel_f32_path";

/// From the CUDA host library linked into models compiled for CUDA
/// (lib/Runtime/CUDAHost): the runtime initializes the GPU, allocates
/// inputs and parameters in the model's memory pool and waits for it.
inline constexpr char kCUDAInitSymbol[] = "qopt_cuda_init";
inline constexpr char kCUDAAllocSymbol[] = "qopt_cuda_alloc";
inline constexpr char kCUDAFreeSymbol[] = "qopt_cuda_free";
inline constexpr char kCUDASynchronizeSymbol[] = "qopt_cuda_synchronize";
inline constexpr char kCUDADeviceNameSymbol[] = "qopt_cuda_device_name";
inline constexpr char kCUDAPoolInfoSymbol[] = "qopt_cuda_pool_info";
inline constexpr char kCUDAShutdownSymbol[] = "qopt_cuda_shutdown";
/// Optional (models compiled before 2026-12-06 lack it).
inline constexpr char kCUDAPrefetchSymbol[] = "qopt_cuda_prefetch";
/// CUDA graphs (all optional together): the pool's peak use, capture of a
/// run, replay, destruction, and the copy of a replay's parameter updates.
inline constexpr char kCUDAPeakResetSymbol[] = "qopt_cuda_peak_reset";
inline constexpr char kCUDAPeakBytesSymbol[] = "qopt_cuda_peak_bytes";
inline constexpr char kCUDAGraphsSupportedSymbol[] =
    "qopt_cuda_graphs_supported";
inline constexpr char kCUDACaptureBeginSymbol[] = "qopt_cuda_capture_begin";
inline constexpr char kCUDACaptureEndSymbol[] = "qopt_cuda_capture_end";
inline constexpr char kCUDAGraphLaunchSymbol[] = "qopt_cuda_graph_launch";
inline constexpr char kCUDAGraphDestroySymbol[] = "qopt_cuda_graph_destroy";
inline constexpr char kCUDACopySymbol[] = "qopt_cuda_copy";

/// Manifest keys and fixed values.
namespace manifest {
inline constexpr char kFormat[] = "format";
inline constexpr char kFormatValue[] = "qopt-model";
inline constexpr char kABIVersion[] = "abi_version";
inline constexpr char kQOptVersion[] = "qopt_version";
inline constexpr char kTarget[] = "target";
inline constexpr char kCPU[] = "cpu";
/// kTarget's value for a CUDA model, and the key of its object:
/// {"archs": ["sm_80", …] (cubins), "ptx": "sm_80" (JIT for newer GPUs)}.
inline constexpr char kCUDA[] = "cuda";
inline constexpr char kArchs[] = "archs";
inline constexpr char kPTX[] = "ptx";
inline constexpr char kEntry[] = "entry";
inline constexpr char kWeights[] = "weights";
inline constexpr char kFile[] = "file";
inline constexpr char kId[] = "id";
inline constexpr char kSize[] = "size";
inline constexpr char kInputs[] = "inputs";
inline constexpr char kOutputs[] = "outputs";
inline constexpr char kParameters[] = "parameters";
inline constexpr char kName[] = "name";
inline constexpr char kDType[] = "dtype";
inline constexpr char kShape[] = "shape";
inline constexpr char kDims[] = "dims";
inline constexpr char kOffset[] = "offset";
inline constexpr char kLength[] = "length";
/// A parameter's role: kFrozen ones are read-only (memory-mapped), kTrainable
/// and kState ones mutable (the runtime keeps a writable copy).
inline constexpr char kRole[] = "role";
inline constexpr char kFrozen[] = "frozen";
inline constexpr char kTrainable[] = "trainable";
inline constexpr char kState[] = "state";
/// Names of the parameters whose new values the results after the outputs
/// hold, in order; the runtime takes them after a successful run.
inline constexpr char kUpdates[] = "updates";
/// Models with several entry points: a list of {name, symbol, outputs,
/// updates}, the first being the one the top-level keys describe. Every
/// entry takes the same inputs, parameters and random key.
inline constexpr char kEntries[] = "entries";
inline constexpr char kSymbol[] = "symbol";
/// Whether the entry takes the random key as its last argument.
inline constexpr char kRNGKey[] = "rng_key";
/// Range checks made on the device (a CUDA model's index checks): their
/// messages. When present, every entry takes a status word (int32 [1],
/// zeroed by the entry) after the random key, and the run failed with
/// message `checks[s - 1]` when it holds s != 0 after the run.
inline constexpr char kChecks[] = "checks";
/// On a CUDA model's entry (top level for the first, in `entries` for the
/// others): whether its host code touches only host memory, so that the
/// runtime may capture its launches once per input shapes and replay them
/// as a CUDA graph.
inline constexpr char kCUDAGraph[] = "cuda_graph";
/// Run-time adapter slots (qoptc --lora-slots), when the model has them: a
/// list of {module, rank, lora_a, lora_b}, the last two naming the
/// trainable f32 parameters (rank×in, out×rank) a loaded adapter fills.
inline constexpr char kLoraSlots[] = "lora_slots";
inline constexpr char kModule[] = "module";
inline constexpr char kRank[] = "rank";
inline constexpr char kLoraA[] = "lora_a";
inline constexpr char kLoraB[] = "lora_b";
/// The instruction-set extensions the code uses (names in kCPUFeatures).
inline constexpr char kCPUFeatures[] = "cpu_features";
} // namespace manifest

/// The x86-64 instruction-set extensions that generated code may use and
/// the runtime checks before loading a model: spelled as LLVM names them
/// (`+avx2`) and as GCC's and clang's `__builtin_cpu_supports` does. A model
/// compiled for a CPU with AVX-512 then fails to load on one without, with a
/// message, instead of dying of SIGILL.
inline constexpr const char *kCPUFeatures[] = {
    "sse4.2",   "avx",      "avx2",       "fma",        "f16c",
    "bmi",      "bmi2",     "avx512f",    "avx512bw",   "avx512dq",
    "avx512vl", "avx512cd", "avx512vnni", "avx512bf16", "avx512fp16"};

/// The weights file's safetensors `__metadata__` entry that ties it to its
/// library.
inline constexpr char kWeightsIdKey[] = "qopt_id";
inline constexpr char kWeightsFormatValue[] = "qopt";

/// Element types a compiled model passes. `code` is the runtime C API's
/// `qopt_dtype` value (include/qopt/Runtime/Runtime.h), `name` the ONNX-style
/// manifest name, `safetensors` the safetensors dtype.
enum class ElementKind { Float, BFloat, Signed, Unsigned, Bool };

struct DType {
  int code;
  const char *name;
  const char *safetensors;
  unsigned bytes;
  ElementKind kind;
  unsigned bits;
};

inline constexpr DType kDTypes[] = {
    {1, "float32", "F32", 4, ElementKind::Float, 32},
    {2, "float64", "F64", 8, ElementKind::Float, 64},
    {3, "float16", "F16", 2, ElementKind::Float, 16},
    {4, "bfloat16", "BF16", 2, ElementKind::BFloat, 16},
    {5, "int8", "I8", 1, ElementKind::Signed, 8},
    {6, "int16", "I16", 2, ElementKind::Signed, 16},
    {7, "int32", "I32", 4, ElementKind::Signed, 32},
    {8, "int64", "I64", 8, ElementKind::Signed, 64},
    {9, "uint8", "U8", 1, ElementKind::Unsigned, 8},
    {10, "uint16", "U16", 2, ElementKind::Unsigned, 16},
    {11, "uint32", "U32", 4, ElementKind::Unsigned, 32},
    {12, "uint64", "U64", 8, ElementKind::Unsigned, 64},
    {13, "bool", "BOOL", 1, ElementKind::Bool, 1},
};

inline const DType *findDType(ElementKind kind, unsigned bits) {
  for (const DType &d : kDTypes)
    if (d.kind == kind && d.bits == bits)
      return &d;
  return nullptr;
}

inline const DType *findDType(const char *name) {
  for (const DType &d : kDTypes)
    if (std::strcmp(d.name, name) == 0)
      return &d;
  return nullptr;
}

inline const DType *findDType(int code) {
  for (const DType &d : kDTypes)
    if (d.code == code)
      return &d;
  return nullptr;
}

} // namespace qopt::compiled_model

#endif // QOPT_SUPPORT_COMPILEDMODEL_H
