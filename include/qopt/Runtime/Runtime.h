/*===- Runtime.h - qopt runtime C API ----------------------------*- C -*-===*\
|*                                                                            *|
|* Loads a model compiled by qoptc (model.so + its weights file) and runs it. *|
|* The runtime never links MLIR or LLVM. Functions returning int return 0 on  *|
|* success; on failure, qopt_last_error() says why (per thread).              *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#ifndef QOPT_RUNTIME_RUNTIME_H
#define QOPT_RUNTIME_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define QOPT_MAX_RANK 16

typedef enum qopt_dtype {
  QOPT_DTYPE_INVALID = 0,
  QOPT_DTYPE_F32,
  QOPT_DTYPE_F64,
  QOPT_DTYPE_F16,
  QOPT_DTYPE_BF16,
  QOPT_DTYPE_I8,
  QOPT_DTYPE_I16,
  QOPT_DTYPE_I32,
  QOPT_DTYPE_I64,
  QOPT_DTYPE_U8,
  QOPT_DTYPE_U16,
  QOPT_DTYPE_U32,
  QOPT_DTYPE_U64,
  QOPT_DTYPE_BOOL, /* one byte per element, 0 or 1 */
} qopt_dtype;

/* ONNX-style name ("float32", "int64", "bool", ...), or "invalid". */
const char *qopt_dtype_name(qopt_dtype dtype);
/* Bytes per element; 0 for QOPT_DTYPE_INVALID. */
size_t qopt_dtype_size(qopt_dtype dtype);
/* The dtype named `name` (as qopt_dtype_name spells it), or INVALID. */
qopt_dtype qopt_dtype_from_name(const char *name);

/* A dense row-major tensor. */
typedef struct qopt_tensor {
  qopt_dtype dtype;
  int32_t rank;
  int64_t shape[QOPT_MAX_RANK];
  void *data;
} qopt_tensor;

/* What a model expects or produces. shape[i] is -1 for a dimension known
   only at run time; dim_names[i] then names it when the model does
   ("batch", "seq"), else it is NULL. Strings live as long as the model. */
typedef struct qopt_tensor_info {
  const char *name;
  qopt_dtype dtype;
  int32_t rank;
  int64_t shape[QOPT_MAX_RANK];
  const char *dim_names[QOPT_MAX_RANK];
} qopt_tensor_info;

typedef struct qopt_model qopt_model;

/* A parameter's role. Frozen ones are read from the memory-mapped weights
   file and never change; trainable ones (what training differentiates) and
   state (optimizer moments, step counters) are mutable: the runtime keeps
   its own copy, which a model's updates replace after each successful run
   and which qopt_model_set_parameter writes. */
typedef enum qopt_param_role {
  QOPT_PARAM_FROZEN = 0,
  QOPT_PARAM_TRAINABLE = 1,
  QOPT_PARAM_STATE = 2,
} qopt_param_role;

const char *qopt_last_error(void);

/* Loads `path` (a model.so from qoptc) and memory-maps the weights file its
   manifest names, next to it. The file is checked before it is loaded (its
   checksum trailer, ELF headers and segments, manifest): a truncated or
   corrupted library is an error, not a signal. The first load also sets glibc's
   M_MMAP_THRESHOLD and M_TRIM_THRESHOLD (mallopt) to 1 GiB so that the
   buffers of repeated runs are reused rather than mapped and zeroed anew. */
int qopt_model_load(const char *path, qopt_model **model);

/* qopt_model_load, refusing a model compiled for another device than
   `device` ("cpu" or "cuda"; NULL: the one it was compiled for). A CUDA
   model (qoptc --target cuda) opens the GPU through the driver
   (libcuda.so.1; QOPT_CUDA_DEVICE picks the GPU, default 0), reserves its
   memory pool (QOPT_CUDA_POOL_BYTES, default 90% of the free memory) and
   copies its parameters there; no driver, no GPU, a GPU older than the
   model's architectures or too little memory are errors. */
int qopt_model_load_device(const char *path, const char *device,
                           qopt_model **model);

/* "cpu" or "cuda": what the model was compiled for. */
const char *qopt_model_device(const qopt_model *model);

/* The GPU a CUDA model runs on ("" for a CPU model). */
const char *qopt_model_gpu_name(const qopt_model *model);

/* A CUDA model's memory pool: bytes in use (its parameters, between runs)
   and its size. Returns 0, or 1 for a CPU model. */
int qopt_model_gpu_memory(const qopt_model *model, size_t *in_use,
                          size_t *capacity);
void qopt_model_destroy(qopt_model *model);

size_t qopt_model_num_inputs(const qopt_model *model);
size_t qopt_model_num_outputs(const qopt_model *model);
size_t qopt_model_num_parameters(const qopt_model *model);
int qopt_model_input_info(const qopt_model *model, size_t index,
                          qopt_tensor_info *info);
int qopt_model_output_info(const qopt_model *model, size_t index,
                           qopt_tensor_info *info);
/* The model's manifest (JSON), as qoptc wrote it. */
const char *qopt_model_manifest(const qopt_model *model);

/* Runs the model. `inputs` are checked against the model (count, dtype,
   rank, static sizes, and equal sizes for equally named dimensions). On
   success every outputs[i] is filled with a buffer the caller owns: release
   it with qopt_tensor_free. What only the run can decide (indices in range,
   sizes that broadcast) is checked by the model's code: a failed check
   returns non-zero with "the model stopped: node '...' (OP, opset N): ..."
   before anything is read or written out of bounds. Runs of one model may
   overlap (threads), except for a model with state (parameter updates or a
   random key): its runs, and the parameter and key functions below, take
   turns. */
int qopt_model_run(qopt_model *model, const qopt_tensor *inputs,
                   size_t num_inputs, qopt_tensor *outputs, size_t num_outputs);
void qopt_tensor_free(qopt_tensor *tensor);

/* Entry points. A model compiled for training (qoptc --train) has several
   (train_step, eval_step, gradients), in manifest order; others have one,
   "forward". Every entry takes the model's inputs; each has its own
   outputs, and qopt_model_run runs entry 0 (qopt_model_num_outputs and
   qopt_model_output_info describe it). */
size_t qopt_model_num_entries(const qopt_model *model);
/* NULL when `entry` is out of range. */
const char *qopt_model_entry_name(const qopt_model *model, size_t entry);
size_t qopt_model_entry_num_outputs(const qopt_model *model, size_t entry);
int qopt_model_entry_output_info(const qopt_model *model, size_t entry,
                                 size_t index, qopt_tensor_info *info);
int qopt_model_run_entry(qopt_model *model, size_t entry,
                         const qopt_tensor *inputs, size_t num_inputs,
                         qopt_tensor *outputs, size_t num_outputs);

/* Parameters, in manifest order (index < qopt_model_num_parameters). */
int qopt_model_parameter_info(const qopt_model *model, size_t index,
                              qopt_tensor_info *info, qopt_param_role *role);
/* A view of the parameter's current value: `data` points into the
   runtime's memory (do not free or write it; read-only for frozen
   parameters) and stays valid until the next run, set or destroy. */
int qopt_model_get_parameter(const qopt_model *model, const char *name,
                             qopt_tensor *view);
/* Copies `value` (exact dtype and shape) into a trainable or state
   parameter (e.g. to resume from a checkpoint); frozen ones are an error. */
int qopt_model_set_parameter(qopt_model *model, const char *name,
                             const qopt_tensor *value);

/* The random key [seed, counter] the next run passes to a model that uses
   one (dropout, stochastic rounding): counter-based, so setting the same
   key again replays a run bit for bit. Each successful run advances the
   counter by one. Starts at seed 0, counter 0. */
int qopt_model_uses_rng(const qopt_model *model);
void qopt_model_get_rng(const qopt_model *model, int64_t *seed,
                        int64_t *counter);
void qopt_model_set_rng(qopt_model *model, int64_t seed, int64_t counter);

/* Run-time adapter slots (a model compiled with qoptc --lora-slots): the
   modules that have one, with its rank. */
size_t qopt_model_num_lora_slots(const qopt_model *model);
int qopt_model_lora_slot(const qopt_model *model, size_t index,
                         const char **module, int64_t *rank);
/* Loads the PEFT LoRA adapter in folder `dir` (what save_pretrained writes:
   adapter_config.json, adapter_model.safetensors) into the slots: every
   module it adapts must have a slot of at least its rank (a smaller rank is
   padded with zeros; the scale lora_alpha / r, or / sqrt(r) with rsLoRA, is
   folded into B, with a module's alpha from alpha_pattern where a key
   matches it as PEFT matches them); slots it does not use hold zeros. An
   adapter that does not fit (a module without a slot, a rank above the
   slot's, DoRA, an alpha_pattern key that is not a regular expression, an
   unknown config key with a value) is an error naming it, and leaves the
   previous adapter in place. Takes turns with runs. */
int qopt_model_load_adapter(qopt_model *model, const char *dir);
/* Zeros every slot: the base model's outputs again. */
int qopt_model_unload_adapter(qopt_model *model);

/* Threads the model's kernels use (<= 0: all cores). Process-wide for the
   kernel library of this model. */
int qopt_model_set_num_threads(qopt_model *model, int num_threads);

/* Lines naming the CPU, the code path its quantized products run on
   ("avx512-vnni", "avx512", "avx2" or "scalar": chosen at load from the
   CPU's features, capped by QOPT_CPU_KERNELS) and its f32 products'
   ("avx512": the kernel library's own, weights packed once; "openblas").
   Valid until the next call. */
const char *qopt_model_cpu_kernels(qopt_model *model);

/* The generated loop nests run so far by the model's kernel library (one
   per model file a process loaded: handles to the same file share the
   counts): split among its threads (*pooled) or run on the calling thread
   (*on_caller: too little work to pay for waking the threads, or one
   thread). A model compiled with --parallel=false counts none. Returns
   0. */
int qopt_model_loop_counts(qopt_model *model, int64_t *pooled,
                           int64_t *on_caller);

#ifdef __cplusplus
}
#endif

#endif /* QOPT_RUNTIME_RUNTIME_H */
