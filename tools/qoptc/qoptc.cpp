//===- qoptc.cpp - Compile an ONNX model to a native library ----*- C++ -*-===//
//
//   qoptc model.onnx --target cpu -o model.so [--dim seq=128]
//
// writes model.so, model.safetensors (weights) and model.json (manifest),
// which qopt-run and the runtime's C API / Python binding load. A `.mlir`
// input is taken as already imported graph IR.
//
//===----------------------------------------------------------------------===//

#include "Calibration.h"
#include "ToolSupport.h"

#include "qopt/Config.h"
#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Import/ONNX/ImportONNX.h"
#include "qopt/InitAllDialects.h"
#include "qopt/InitAllPasses.h"
#include "qopt/Pipelines/Pipelines.h"
#include "qopt/Pipelines/Recipes.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>

using namespace mlir;
namespace cl = llvm::cl;

static cl::OptionCategory category("qoptc options");
static cl::opt<std::string> inputPath(cl::Positional,
                                      cl::desc("<model.onnx | model.mlir>"),
                                      cl::cat(category));
static cl::opt<std::string> outputPath("o",
                                       cl::desc("Output shared library "
                                                "(required unless listing)"),
                                       cl::value_desc("model.so"),
                                       cl::cat(category));
static cl::opt<std::string>
    target("target",
           cl::desc("Target to compile for: cpu, or cuda (NVIDIA GPUs: "
                    "kernels embedded as cubins, run through the CUDA "
                    "driver)"),
           cl::init("cpu"), cl::cat(category));
static cl::list<std::string> cudaArchs(
    "cuda-archs",
    cl::desc("With --target cuda: the GPU architectures to embed cubins for "
             "(default " QOPT_CUDA_ARCHS "); the first is also the PTX's "
             "target, which the driver compiles for newer GPUs"),
    cl::value_desc("sm_80,sm_90,..."), cl::CommaSeparated, cl::cat(category));
static cl::opt<std::string> cudaToolkit(
    "cuda-toolkit",
    cl::desc("With --target cuda: the CUDA toolkit whose ptxas, fatbinary "
             "and libdevice to use (default $QOPT_CUDA_ROOT, else the one "
             "found when qopt was built)"),
    cl::value_desc("dir"), cl::cat(category));
static cl::opt<bool> cudaEmulate(
    "cuda-emulate",
    cl::desc("With --target cuda: run the generated kernels on the CPU as "
             "loops over their blocks and threads (a CPU model that tests "
             "the kernels' index arithmetic without a GPU)"),
    cl::cat(category));
static cl::opt<unsigned> cudaBlockSize(
    "cuda-block-size",
    cl::desc("With --target cuda: threads per block of the generated kernels "
             "(a multiple of 32 up to 1024)"),
    cl::init(256), cl::cat(category));
static cl::opt<std::string> cudaMatmulPrecision(
    "cuda-matmul-precision",
    cl::desc("With --target cuda: how the kernel library's GEMM multiplies "
             "(torch.set_float32_matmul_precision's names): 'highest' f32 on "
             "the CUDA cores, the CPU target's numerics (default); 'high' "
             "operands rounded to tf32, 'medium' to bf16, on the tensor "
             "cores with f32 accumulators. Decode's GEMV (up to 16 rows "
             "through a quantized weight), the attention and the W8A8 "
             "products stay as they are"),
    cl::value_desc("highest|high|medium"), cl::init("highest"),
    cl::cat(category));
static cl::list<std::string>
    dims("dim",
         cl::desc("Pin a symbolic ONNX dimension, e.g. --dim seq=128 "
                  "(repeat or separate with commas)"),
         cl::value_desc("name=size"), cl::CommaSeparated, cl::cat(category));
static cl::opt<std::string>
    cpu("cpu",
        cl::desc("LLVM CPU to generate code for; 'host' (the default) is the "
                 "machine qoptc runs on, 'x86-64-v3' a portable AVX2 build"),
        cl::init("host"), cl::cat(category));
static cl::opt<unsigned>
    optLevel("O",
             cl::desc("LLVM optimization level (2: -O3 gave the same speed at "
                      "three times the compile time)"),
             cl::init(2), cl::Prefix, cl::cat(category));
static cl::opt<bool>
    noBlas("no-blas",
           cl::desc("Generate loops for matrix products instead of calling "
                    "the kernel library (slow; for checking)"),
           cl::cat(category));
static cl::opt<bool> int8Activations(
    "int8-activations",
    cl::desc("Quantized linear layers quantize their inputs to int8 per "
             "block of 32 on the fly and use integer dot products (AVX-512 "
             "VNNI; other CPUs compute in f32): faster decode at a small "
             "error, like onnxruntime's MatMulNBits accuracy_level 4"),
    cl::cat(category));
static cl::opt<bool> parallel(
    "parallel",
    cl::desc("Run the outer loops of every generated loop nest (norms, "
             "softmax, activations, copies) on the kernel library's thread "
             "pool, beside the products (default; --parallel=false keeps "
             "them on the calling thread)"),
    cl::init(true), cl::cat(category));
static cl::opt<bool> allowUnsupported(
    "allow-unsupported",
    cl::desc("Import nodes of unsupported domains as opaque ops (they then "
             "fail to compile, with the node named)"),
    cl::cat(category));
static cl::opt<std::string>
    linker("linker", cl::desc("Compiler driver that links the library"),
           cl::init("c++"), cl::cat(category));
static cl::opt<std::string>
    kernelsLib("kernels-lib",
               cl::desc("The CPU kernel library (default: "
                        "../lib/libqopt_kernels_cpu.a beside qoptc)"),
               cl::cat(category));
static cl::opt<bool> timing("time", cl::desc("Print each step's wall time"),
                            cl::cat(category));
static cl::opt<std::string>
    dumpGraph("dump-graph-ir",
              cl::desc("Write the IR after the graph passes to this file"),
              cl::cat(category));
static cl::opt<std::string> quantizeActivations(
    "quantize-activations", cl::value_desc("SPEC"),
    cl::desc("Quantize the inputs of the layers --quantize selects at run "
             "time: int8:per-token or int4:per-token (scales from each "
             "token, computed as the model runs), or int8:per-tensor,static "
             "(one scale per layer from --calibration-data); before integer "
             "weights (--quantize int4 / int8, SVDQuant) a per-token "
             "quantizer runs the product in integers (W8A8, W4A4)"),
    cl::cat(category));
static cl::opt<std::string> exportONNX(
    "export-onnx", cl::value_desc("out.onnx"),
    cl::desc("Write the model after its graph passes (quantized weights, "
             "adapters, rotations, smoothing, low-rank branches) as ONNX "
             "that onnxruntime runs, weights in <out.onnx>.data: "
             "DequantizeLinear (opset 21, int4 / int8, block-wise) or "
             "MatMulNBits for integer weights, a codebook Gather for NF4 / "
             "FP4 / FP8, LoRA as MatMuls, Hadamard rotations as constant "
             "MatMuls; without -o, only the export is written"),
    cl::cat(category));
static cl::opt<bool> exportContrib(
    "export-onnx-contrib", cl::init(true),
    cl::desc("With --export-onnx: use onnxruntime's com.microsoft "
             "MatMulNBits for 4-bit layers with groups of 16 or more (a "
             "power of two); =false keeps to ai.onnx operators"),
    cl::cat(category));
static cl::opt<std::string>
    dumpLLVM("dump-llvm-ir",
             cl::desc("Write the optimized LLVM IR to this file"),
             cl::cat(category));

static cl::opt<bool> listModules(
    "list-modules",
    cl::desc("Print every linear layer with its module path, shape and "
             "weight format (what an adapter's target_modules name), then "
             "stop"),
    cl::cat(category));

static cl::opt<std::string> weightsFile(
    "weights",
    cl::desc("Replace the model's weights by a safetensors checkpoint's "
             "(transformers' save_pretrained), matched by module path and "
             "parameter name; bitsandbytes 4-bit layers (QLoRA checkpoints: "
             "NF4 / FP4, double quantization) stay quantized, their codes "
             "used as they are"),
    cl::value_desc("model.safetensors"), cl::cat(category));

static cl::opt<std::string> quantize(
    "quantize",
    cl::desc("Quantize the linear layers' weights (all but the output head) "
             "at compile time: nf4 / fp4 (bitsandbytes' blockwise formats; "
             "block=N, double-quant) or int2 / int4 / int8 (per-channel or "
             "group=N; sym or asym; clip=minmax|mse), e.g. "
             "nf4:block=64,double-quant, int4:group=128,asym, "
             "int8:per-channel"),
    cl::value_desc("SPEC"), cl::cat(category));

static cl::list<std::string> quantizeModules(
    "quantize-modules",
    cl::desc("With --quantize: the layers to quantize, as PEFT's "
             "target_modules (module names or name suffixes, comma "
             "separated, or one regular expression matched against the full "
             "name; default all-linear, which leaves out the output head), "
             "e.g. --quantize-modules '.*' for every linear layer, the head "
             "included"),
    cl::value_desc("NAMES"), cl::CommaSeparated, cl::cat(category));

static cl::opt<std::string> adapter(
    "adapter",
    cl::desc("Load a PEFT LoRA adapter (the folder save_pretrained writes: "
             "adapter_config.json, adapter_model.safetensors); it runs "
             "unmerged unless --merge"),
    cl::value_desc("DIR"), cl::cat(category));
static cl::opt<std::string> recipeName(
    "recipe",
    cl::desc("Apply a named recipe (a built-in one, which --list-recipes "
             "prints, or a .yaml file): its graph passes, --quantize spec, "
             "adapter config and flags"),
    cl::value_desc("name|recipe.yaml"), cl::cat(category));
static cl::opt<bool>
    listRecipes("list-recipes",
                cl::desc("Print the built-in recipes (name, summary, "
                         "paper, passes) and exit"),
                cl::cat(category));
static cl::opt<std::string> loraConfig(
    "lora-config",
    cl::desc("Insert fresh LoRA adapters as a PEFT adapter_config.json "
             "describes them (target_modules, r, lora_alpha, "
             "init_lora_weights, ...)"),
    cl::value_desc("adapter_config.json"), cl::cat(category));
static cl::opt<std::string> loraSlots(
    "lora-slots",
    cl::desc("Compile run-time adapter slots for the layers a PEFT "
             "adapter_config.json targets, up to its ranks: the runtime "
             "(qopt-run --adapter, Model.load_adapter) loads any PEFT LoRA "
             "adapter that fits, without recompiling"),
    cl::value_desc("adapter_config.json"), cl::cat(category));
static cl::opt<std::string> saveAdapter(
    "save-adapter",
    cl::desc("Write the adapters (fresh from --lora-config, or loaded) in "
             "PEFT's format, for PeftModel.from_pretrained: "
             "adapter_config.json + adapter_model.safetensors"),
    cl::value_desc("DIR"), cl::cat(category));
static cl::opt<std::string> calibrationData(
    "calibration-data",
    cl::desc("Calibration samples for data-driven adapter inits (EVA, "
             "LoRA-GA, with --lora-config) and for graph passes that read "
             "activation statistics (qopt-smooth): an .npz of arrays named "
             "after the model's inputs, first dimension = samples (an "
             "optional 'labels' array masks tokens, -100); for the passes "
             "also a .jsonl file (one object of the inputs per line) or the "
             ".qstats file qopt-calibrate writes"),
    cl::value_desc("calib.npz|calib.jsonl|stats.qstats"), cl::cat(category));
static cl::opt<int64_t> calibrationBatchSize(
    "calibration-batch-size",
    cl::desc("Samples per calibration batch (PEFT's data loader batch "
             "size; default 1)"),
    cl::init(1), cl::cat(category));
static cl::opt<int64_t> calibrationMaxPasses(
    "calibration-max-passes",
    cl::desc("Passes over the calibration batches before EVA gives up on "
             "layers whose components have not converged (PEFT cycles "
             "until they do; default 100)"),
    cl::init(100), cl::cat(category));
static cl::opt<bool>
    merge("merge",
          cl::desc("Merge the adapter into the base weights (PEFT's "
                   "merge_and_unload)"),
          cl::cat(category));
static cl::opt<std::string> graphPasses(
    "graph-passes",
    cl::desc("Graph-level passes to run on the model after adapters and "
             "weight quantization, before code generation: a textual MLIR "
             "pipeline, e.g. 'qopt-insert-fake-quant{weights=int4:group=32}'"),
    cl::value_desc("pipeline"), cl::cat(category));
static cl::opt<double> budgetBits(
    "budget-bits",
    cl::desc("With --quantize intK[:…]: choose each layer's width (2 to 8 "
             "bits) for the least error within this many stored bits per "
             "weight, scales included; prints the choice"),
    cl::init(0.0), cl::cat(category));
static cl::opt<std::string> fisher(
    "fisher",
    cl::desc("With --budget-bits: a safetensors file of Fisher diagonals "
             "(<module>.weight, the weight's shape) that weight each "
             "element's squared error, so that sensitive layers get more "
             "bits"),
    cl::value_desc("fisher.safetensors"), cl::cat(category));
static cl::opt<bool> requantize(
    "requantize",
    cl::desc("With --merge: merge into quantized base weights by quantizing "
             "the sum again in their layout (lossy; prints the error per "
             "layer)"),
    cl::cat(category));

static cl::opt<bool> train(
    "train",
    cl::desc("Compile training instead of inference: entries train_step "
             "(updates the adapter -- --adapter, made trainable, or "
             "--lora-config -- and any other trainable parameters in place "
             "and returns the loss), eval_step and gradients, each taking "
             "the model's inputs and the labels"),
    cl::cat(category));
static cl::opt<std::string> loss(
    "loss",
    cl::desc("With --train: causal-lm (transformers' shifted cross-entropy, "
             "labels -100 ignored; the default), seq-cls, mse or kl-distill "
             "(to teacher_logits, at --temperature)"),
    cl::init("causal-lm"), cl::cat(category));
static cl::opt<std::string> optimizerSpec(
    "optimizer",
    cl::desc("With --train: the optimizer, as "
             "\"adamw:lr=1e-3,betas=0.9/0.999,eps=1e-8,weight_decay=0.01\" "
             "(the default) or \"sgd:lr=0.1,momentum=0.9,dampening=0,"
             "nesterov=false,weight_decay=0\" (torch.optim's semantics)"),
    cl::init("adamw:lr=1e-3,betas=0.9/0.999,eps=1e-8,weight_decay=0.01"),
    cl::cat(category));
static cl::opt<std::string> trainEntry(
    "train-entry",
    cl::desc("With --train: the entry points to compile, comma-separated: "
             "train (train_step: one optimizer step, returns the loss), eval "
             "(eval_step: the loss) and gradients (the loss and "
             "grad.<parameter> for every trainable parameter); all three "
             "by default. Add accumulate for gradient accumulation "
             "(accumulate_step adds a micro-batch's gradients to a running "
             "sum; train_step then steps with their mean over the "
             "accumulated micro-batches and its own)"),
    cl::init("train,eval,gradients"), cl::cat(category));
static cl::opt<std::string> lrSchedule(
    "lr-schedule",
    cl::desc("With --train: constant (the default), linear or cosine decay "
             "to zero at --total-steps, after --warmup-steps of linear "
             "warm-up (transformers' schedulers)"),
    cl::init("constant"), cl::cat(category));
static cl::opt<int64_t>
    warmupSteps("warmup-steps",
                cl::desc("With --train: steps of learning-rate warm-up"),
                cl::init(0), cl::cat(category));
static cl::opt<int64_t> totalSteps(
    "total-steps",
    cl::desc("With --train and a linear or cosine schedule: its last step"),
    cl::init(0), cl::cat(category));
static cl::opt<double> maxGradNorm(
    "max-grad-norm",
    cl::desc("With --train: clip the global gradient norm to this "
             "(torch's clip_grad_norm_; 0, the default, does not clip)"),
    cl::init(0.0), cl::cat(category));

static cl::opt<bool> gradientCheckpointing(
    "gradient-checkpointing",
    cl::desc("With --train: recompute each sublayer's activations (between "
             "residual adds) in the backward pass instead of keeping them "
             "from the forward (transformers' gradient checkpointing)"),
    cl::cat(category));
static cl::opt<std::string> activationReport(
    "activation-report", cl::ValueOptional,
    cl::desc("With --train: print each entry's peak tensor bytes and the "
             "bytes the forward keeps for the backward, at the sizes given "
             "to the dynamic dimensions (--activation-report=batch=4,"
             "seq=128)"),
    cl::value_desc("NAME=SIZE,..."), cl::cat(category));

static cl::opt<double> temperature(
    "temperature",
    cl::desc("With --train --loss kl-distill: the distillation temperature T "
             "(default 1)"),
    cl::init(1.0), cl::cat(category));

/// A recipe's adapter config (JSON), when --recipe names one.
static std::string recipeAdapterJson;

static int fail(const Twine &message) {
  llvm::errs() << "qoptc: error: " << message << "\n";
  return 1;
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::SetVersionPrinter([](llvm::raw_ostream &os) {
    os << "qoptc " << QOPT_VERSION << " (" << QOPT_GIT_REVISION << ")\n";
  });
  cl::ParseCommandLineOptions(argc, argv,
                              "qopt model compiler: ONNX to a native "
                              "library, its weights and manifest\n");
  auto start = std::chrono::steady_clock::now();
  if (listRecipes) {
    MLIRContext context;
    mlir::qopt::registerAllPasses();
    for (const std::string &name : mlir::qopt::builtinRecipeNames()) {
      llvm::Expected<mlir::qopt::Recipe> r = mlir::qopt::loadRecipe(name);
      if (!r)
        return fail(llvm::toString(r.takeError()));
      llvm::Expected<std::string> pipeline =
          mlir::qopt::recipePipeline(*r, &context);
      if (!pipeline)
        return fail(llvm::toString(pipeline.takeError()));
      llvm::outs() << r->name << ": " << r->summary << "\n  paper: " << r->paper
                   << "\n  passes: " << *pipeline
                   << (r->int8Activations ? "\n  flags: --int8-activations"
                                          : "")
                   << (r->calibration ? "\n  needs: --calibration-data" : "")
                   << "\n";
    }
    return 0;
  }
  if (inputPath.empty())
    return fail("no model: give model.onnx (or model.mlir)");
  // A recipe sets the options it names, as if given on the command line;
  // giving one of them too is an error.
  if (!recipeName.empty()) {
    llvm::Expected<mlir::qopt::Recipe> r = mlir::qopt::loadRecipe(recipeName);
    if (!r)
      return fail(llvm::toString(r.takeError()));
    auto clash = [&](bool given, StringRef flag) {
      if (given)
        fail("--recipe " + recipeName + " sets " + flag +
             " already: give one or the other");
      return given;
    };
    if (!r->quantize.empty() && clash(!quantize.empty(), "--quantize"))
      return 1;
    if (!r->quantize.empty())
      quantize = r->quantize;
    // The modules select for quantize and quantize-activations alike.
    if (!r->quantizeModules.empty()) {
      if (clash(!quantizeModules.empty(), "--quantize-modules"))
        return 1;
      for (const std::string &m : r->quantizeModules)
        quantizeModules.push_back(m);
    }
    if (!r->quantizeActivations.empty()) {
      if (clash(!quantizeActivations.empty(), "--quantize-activations"))
        return 1;
      quantizeActivations = r->quantizeActivations;
    }
    if (!r->graphPasses.empty()) {
      if (clash(!graphPasses.empty(), "--graph-passes"))
        return 1;
      graphPasses = r->graphPasses;
    }
    if (!r->adapterJson.empty()) {
      if (clash(!loraConfig.empty() || !adapter.empty() || !loraSlots.empty(),
                "an adapter (--lora-config, --adapter, --lora-slots)"))
        return 1;
      loraConfig = "recipe " + r->name + " (adapter)";
      recipeAdapterJson = r->adapterJson;
    }
    if (r->int8Activations)
      int8Activations = true;
    if (r->calibration && calibrationData.empty())
      return fail("--recipe " + recipeName +
                  " needs calibration data: --calibration-data calib.npz, "
                  "calib.jsonl or a .qstats file from qopt-calibrate");
  }
  if (!graphPasses.empty()) { // the passes --graph-passes may name
    mlir::qopt::registerAllPasses();
    mlir::registerTransformsPasses();
  }
  if (!exportONNX.empty() && StringRef(inputPath).ends_with(".mlir"))
    return fail("--export-onnx rewrites the ONNX model it was given: the "
                "input must be a .onnx file");
  if (!exportContrib.getValue() && exportONNX.empty())
    return fail("--export-onnx-contrib needs --export-onnx");
  if (outputPath.empty() && !listModules && exportONNX.empty())
    return fail("no output file: give -o model.so (or --list-modules)");
  if (!adapter.empty() && !loraConfig.empty())
    return fail("--adapter and --lora-config exclude each other: load an "
                "adapter, or insert fresh ones");
  if (!loraSlots.empty() && (!adapter.empty() || !loraConfig.empty() || merge))
    return fail("--lora-slots excludes --adapter, --lora-config and --merge: "
                "the slots are filled at run time");
  if (merge && adapter.empty() && loraConfig.empty())
    return fail("--merge needs --adapter or --lora-config");
  if (!quantizeModules.empty() && quantize.empty() &&
      quantizeActivations.empty())
    return fail("--quantize-modules needs --quantize (it selects the layers "
                "--quantize quantizes) or --quantize-activations");
  if (budgetBits != 0.0 && quantize.empty())
    return fail("--budget-bits needs --quantize with an integer format "
                "(e.g. --quantize int4:group=128,asym --budget-bits 4.25)");
  if (!fisher.empty() && budgetBits == 0.0)
    return fail("--fisher weights the error --budget-bits minimises: give "
                "--budget-bits");
  if (requantize && !merge)
    return fail("--requantize needs --merge (it re-quantizes merged "
                "weights)");
  if (!saveAdapter.empty() && adapter.empty() && loraConfig.empty())
    return fail("--save-adapter needs --adapter or --lora-config");
  if (!calibrationData.empty() && loraConfig.empty() && graphPasses.empty() &&
      !StringRef(quantizeActivations).contains("static"))
    return fail("--calibration-data needs --lora-config (an adapter config "
                "with init_lora_weights \"eva\") or --graph-passes that "
                "read activation statistics (qopt-smooth)");
  if (train && int8Activations)
    return fail("--int8-activations is for inference: a train step's "
                "forward and backward must see the same weights' products");
  if (train && (merge || !loraSlots.empty()))
    return fail("--train excludes --merge and --lora-slots: it trains the "
                "adapter's factors, which must stay separate parameters");
  if (!train &&
      (loss.getNumOccurrences() || optimizerSpec.getNumOccurrences() ||
       trainEntry.getNumOccurrences() || lrSchedule.getNumOccurrences() ||
       warmupSteps.getNumOccurrences() || totalSteps.getNumOccurrences() ||
       maxGradNorm.getNumOccurrences() || temperature.getNumOccurrences() ||
       gradientCheckpointing.getNumOccurrences() ||
       activationReport.getNumOccurrences()))
    return fail("--loss, --optimizer, --train-entry, --lr-schedule, "
                "--warmup-steps, --total-steps, --max-grad-norm, "
                "--temperature, --gradient-checkpointing and "
                "--activation-report need --train");
  if (target != "cpu" && target != "cuda")
    return fail("--target " + target + ": unknown target (cpu or cuda)");
  if (target != "cuda" &&
      (cudaArchs.getNumOccurrences() || cudaToolkit.getNumOccurrences() ||
       cudaEmulate.getNumOccurrences() || cudaBlockSize.getNumOccurrences() ||
       cudaMatmulPrecision.getNumOccurrences()))
    return fail("--cuda-archs, --cuda-toolkit, --cuda-emulate, "
                "--cuda-block-size and --cuda-matmul-precision need --target "
                "cuda");
  if (cudaMatmulPrecision != "highest" && cudaMatmulPrecision != "high" &&
      cudaMatmulPrecision != "medium")
    return fail("--cuda-matmul-precision=" + cudaMatmulPrecision +
                ": unknown precision (highest, high or medium)");
  if (cudaBlockSize == 0 || cudaBlockSize % 32 || cudaBlockSize > 1024)
    return fail("--cuda-block-size=" + std::to_string(cudaBlockSize) +
                ": not a multiple of 32 between 32 and 1024");

  mlir::qopt::CPUTargetOptions options;
  options.outputPath = outputPath;
  options.cpu = cpu;
  options.optLevel = optLevel;
  options.blas = !noBlas;
  options.parallel = parallel;
  options.int8Activations = int8Activations;
  options.linker = linker;
  options.timing = timing;
  options.dumpLLVMIR = dumpLLVM;
  options.kernelsLibrary = kernelsLib.empty()
                               ? mlir::qopt::defaultKernelsLibrary(
                                     argv[0], reinterpret_cast<void *>(&fail))
                               : kernelsLib.getValue();
  options.modelDir = mlir::qopt::modelFolder(inputPath);
  if (target == "cuda") {
    options.cuda.enabled = true;
    options.cuda.emulate = cudaEmulate;
    options.cuda.blockSize = cudaBlockSize;
    std::vector<std::string> archs(cudaArchs.begin(), cudaArchs.end());
    if (archs.empty()) {
      SmallVector<StringRef> defaults;
      llvm::SplitString(QOPT_CUDA_ARCHS, defaults, ",");
      for (StringRef arch : defaults)
        archs.push_back(arch.str());
    }
    for (const std::string &arch : archs) {
      unsigned number = 0;
      if (!StringRef(arch).starts_with("sm_") ||
          StringRef(arch).drop_front(3).getAsInteger(10, number) || number < 80)
        return fail("--cuda-archs: '" + arch +
                    "' is not an architecture qopt compiles for (sm_80 or "
                    "newer, e.g. sm_80,sm_90,sm_100)");
      options.cuda.archs.push_back(arch);
    }
    std::sort(options.cuda.archs.begin(), options.cuda.archs.end(),
              [](const std::string &a, const std::string &b) {
                return std::stoi(a.substr(3)) < std::stoi(b.substr(3));
              });
    options.cuda.archs.erase(
        std::unique(options.cuda.archs.begin(), options.cuda.archs.end()),
        options.cuda.archs.end());
    const char *envRoot = std::getenv("QOPT_CUDA_ROOT");
    options.cuda.toolkit =
        cudaToolkit.getNumOccurrences()
            ? cudaToolkit.getValue()
            : std::string(envRoot && *envRoot ? envRoot : QOPT_CUDA_TOOLKIT);
    llvm::SmallString<256> host(
        llvm::sys::path::parent_path(options.kernelsLibrary));
    llvm::sys::path::append(host, "libqopt_cuda_host.a");
    options.cuda.hostLibrary = host.str().str();
    // The kernel library, built where nvcc was found.
    llvm::SmallString<256> library(
        llvm::sys::path::parent_path(options.kernelsLibrary));
    llvm::sys::path::append(library, "libqopt_cuda_library.a");
    if (llvm::sys::fs::exists(library))
      options.cuda.kernelLibrary = library.str().str();
    options.cuda.matmulPrecision = cudaMatmulPrecision;
    if (cudaMatmulPrecision != "highest" && options.cuda.kernelLibrary.empty())
      return fail("--cuda-matmul-precision=" + cudaMatmulPrecision +
                  ": the CUDA kernel library (libqopt_cuda_library.a), "
                  "whose GEMM it selects, is not beside this qoptc (built "
                  "without nvcc)");
  }

  mlir::qopt::ONNXImportOptions importOptions;
  importOptions.allowUnsupported = allowUnsupported;
  for (const std::string &spec : dims) {
    std::string message;
    if (!mlir::qopt::parseDimSpec(spec, importOptions, message))
      return fail(message);
  }

  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  mlir::qopt::registerAllDialects(registry);
  MLIRContext context(registry);
  context.disableMultithreading();    // two-core build machines; no gain
  context.printOpOnDiagnostic(false); // messages name the node already
  std::string message;
  auto file = openInputFile(inputPath, &message);
  if (!file)
    return fail(message);
  llvm::SourceMgr sourceMgr;
  sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);

  OwningOpRef<ModuleOp> module;
  if (StringRef(inputPath).ends_with(".mlir"))
    module = parseSourceFile<ModuleOp>(sourceMgr, &context);
  else
    module = mlir::qopt::importONNXModel(sourceMgr, &context, importOptions);
  if (!module)
    return 1;
  if (timing)
    llvm::errs() << llvm::format(
        "qoptc: %-28s %8.3f s\n", "import",
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count());
  if (listModules) {
    PassManager pm(&context);
    mlir::qopt::buildONNXFrontEndPipeline(pm, allowUnsupported);
    pm.addPass(mlir::qopt::createQOptListModulesPass());
    return failed(pm.run(*module)) ? 1 : 0;
  }
  mlir::qopt::ModelCompileOptions modelOptions;
  modelOptions.allowUnsupported = allowUnsupported;
  modelOptions.weightsPath = weightsFile;
  modelOptions.quantizeSpec = quantize;
  modelOptions.quantizeModules.assign(quantizeModules.begin(),
                                      quantizeModules.end());
  modelOptions.quantizeActivations = quantizeActivations;
  modelOptions.budgetBits = budgetBits;
  modelOptions.budgetFisher = fisher;
  modelOptions.graphPasses = graphPasses;
  modelOptions.adapterDir = adapter;
  modelOptions.loraConfigPath = loraConfig;
  modelOptions.loraConfigJson = recipeAdapterJson;
  modelOptions.loraSlotsPath = loraSlots;
  modelOptions.mergeAdapter = merge;
  modelOptions.requantizeMerged = requantize;
  modelOptions.saveAdapterDir = saveAdapter;
  modelOptions.calibrationDataPath = calibrationData;
  modelOptions.calibrationBatchSize = calibrationBatchSize;
  modelOptions.calibrationMaxPasses = calibrationMaxPasses;
  // Data-driven adapter inits: EVA, or LoRA-GA's gradients.
  modelOptions.calibrator = mlir::qopt::computeCalibrationState;
  // Activation statistics for the outlier passes (qopt-smooth).
  modelOptions.statsCalibrator = [](ModuleOp m, StringRef data,
                                    int64_t batchSize,
                                    const mlir::qopt::CPUTargetOptions &t,
                                    StringRef workDir, StringRef path) {
    mlir::qopt::ActivationStatsOptions stats;
    stats.batchSize = batchSize;
    stats.summary = false; // --timing reports it
    return mlir::qopt::computeActivationStats(m, data, stats, t, workDir, path);
  };
  modelOptions.train = train;
  modelOptions.trainStep.loss = loss;
  modelOptions.trainStep.optimizer = optimizerSpec;
  modelOptions.trainStep.entry = trainEntry;
  modelOptions.trainStep.schedule = lrSchedule;
  modelOptions.trainStep.warmupSteps = warmupSteps;
  modelOptions.trainStep.totalSteps = totalSteps;
  modelOptions.trainStep.maxGradNorm = maxGradNorm;
  modelOptions.trainStep.temperature = temperature;
  modelOptions.trainStep.gradientCheckpointing = gradientCheckpointing;
  modelOptions.trainStep.activationReport =
      activationReport.getNumOccurrences() > 0;
  modelOptions.trainStep.activationSizes = activationReport;
  modelOptions.dumpGraphIR = dumpGraph;
  modelOptions.exportONNXPath = exportONNX;
  modelOptions.exportContrib = exportContrib;
  modelOptions.modelPath = inputPath;
  modelOptions.timing = timing;
  if (failed(mlir::qopt::compileModelForCPU(*module, modelOptions, options)))
    return 1;
  if (timing)
    llvm::errs() << llvm::format(
        "qoptc: %-28s %8.3f s\n", "total",
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count());
  return 0;
}
