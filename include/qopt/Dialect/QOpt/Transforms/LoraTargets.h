//===- LoraTargets.h - PEFT's LoraConfig: which layers get adapters -*- C++
//-*-===//
//
// The layers an adapter targets, chosen exactly as PEFT's LoraConfig does
// (peft/tuners/tuners_utils.py check_target_module_exists, get_pattern_key):
// `target_modules` as a list (a module matches when its name equals an
// entry or ends with "." + entry) or as one full-match regular expression,
// "all-linear", `exclude_modules`, `layers_to_transform` /
// `layers_pattern`, and `rank_pattern` / `alpha_pattern`. Used by
// `--qopt-list-modules`, `--qopt-insert-lora` and the adapter loaders.
//
// PEFT's patterns are Python regular expressions; they are translated to
// POSIX extended ones (\d, \w, \s and their negations, inside and outside
// brackets); constructs without an equivalent (lazy quantifiers, (?...)
// groups, back-references) are errors naming the pattern.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_DIALECT_QOPT_TRANSFORMS_LORATARGETS_H
#define QOPT_DIALECT_QOPT_TRANSFORMS_LORATARGETS_H

#include "qopt/Dialect/QOpt/IR/QOpt.h"
#include "qopt/Support/DenseMath.h"

#include "mlir/Pass/Pass.h"

#include "llvm/ADT/StringSet.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Regex.h"

#include <optional>
#include <string>
#include <vector>

namespace mlir::qopt {

/// The part of a PEFT LoraConfig that says which layers get an adapter and
/// of which size.
struct LoraSelection {
  /// target_modules as a list of names / suffixes ...
  std::vector<std::string> targetModules;
  /// ... or as one full-match regular expression, or "all-linear".
  std::optional<std::string> targetRegex;
  bool allLinear = false;
  std::vector<std::string> excludeModules;
  std::optional<std::string> excludeRegex;
  /// layers_to_transform (empty: all layers) and layers_pattern.
  std::vector<int64_t> layersToTransform;
  std::vector<std::string> layersPattern;
  int64_t r = 8;
  double loraAlpha = 8;
  /// rank_pattern / alpha_pattern, in the config's order.
  std::vector<std::pair<std::string, int64_t>> rankPattern;
  std::vector<std::pair<std::string, double>> alphaPattern;
};

/// A PEFT `adapter_config.json` (LoraConfig.save_pretrained): the
/// selection and the adapter's variant.
struct PeftLoraConfig {
  LoraSelection selection;
  double loraDropout = 0;
  bool useRslora = false, useDora = false;
  /// init_lora_weights as PEFT spells it: "true", "false", "gaussian",
  /// "pissa", "pissa_niter_4", "olora", "loftq", "eva", ...
  std::string initLoraWeights = "true";
  /// loftq_config's loftq_bits and loftq_iter.
  int64_t loftqBits = 4, loftqIter = 1;
  /// PEFT's RandLoRA tuner (peft_type RANDLORA: r, randlora_alpha and
  /// randlora_dropout land in the fields above; init_lora_weights becomes
  /// "randlora").
  bool randlora = false;
  /// RandLoraConfig's save_projection, sparse / very_sparse and
  /// init_weights.
  bool randloraSaveProjection = true, randloraSparse = false,
       randloraInitWeights = true;
  /// eva_config (PEFT's EvaConfig).
  struct Eva {
    double rho = 2.0, tau = 0.99;
    bool useLabelMask = true;
    int64_t labelMaskValue = -100;
    bool whiten = false, adjustScalingFactors = true;
  } eva;
  /// lora_ga_config (PEFT's LoraGAConfig).
  struct LoraGA {
    std::string direction = "ArB2r", scale = "stable";
    double stableGamma = 16;
  } loraGa;
  /// lora_sb_config (qopt's, for init_lora_weights "lora-sb"): the
  /// learning rate of the update the init approximates.
  struct LoraSB {
    double lr = 0;
  } loraSb;
};

/// Parses `adapter_config.json`. A key qopt cannot honour at the value it
/// has (another peft_type, bias, lora_bias, modules_to_save,
/// target_parameters, layer_replication, QA-LoRA, trainable tokens, an
/// unknown key with a value) is an error naming it, never ignored.
llvm::Expected<PeftLoraConfig> parsePeftLoraConfig(llvm::StringRef json);

/// qopt-insert-lora with the selection and variant of a parsed
/// adapter_config.json (`qoptc --lora-config`, or `--lora-slots` with
/// `slots`), instead of pass options. `calibrationState` is the per-layer
/// state a data-driven init reads: `eva-state` for EVA, `loraga-state` for
/// LoRA-GA.
std::unique_ptr<Pass>
createQOptInsertLoRAPass(const PeftLoraConfig &config, llvm::StringRef modelDir,
                         uint64_t seed = 0, bool slots = false,
                         llvm::StringRef calibrationState = "");

/// One float tensor of a safetensors file (pointing into its buffer).
struct SafetensorsTensor {
  ::qopt::dense::FloatKind kind;
  std::vector<int64_t> shape;
  const char *data;
  size_t count;
};

/// One f32 tensor to write into a safetensors file.
struct SafetensorsF32 {
  std::string name;
  std::vector<int64_t> shape;
  const std::vector<float> *values;
};

/// The bytes of a safetensors file holding `tensors`, with `metadata` (by
/// default PEFT's `{"format": "pt"}`).
std::string encodeF32Safetensors(
    llvm::ArrayRef<SafetensorsF32> tensors,
    llvm::ArrayRef<std::pair<std::string, std::string>> metadata = {
        {"format", "pt"}});

/// The float tensors of the safetensors file `buffer` (read from `path`,
/// which errors name with the malformed tensor).
llvm::Expected<llvm::StringMap<SafetensorsTensor>>
readFloatSafetensors(const llvm::MemoryBuffer &buffer, llvm::StringRef path);

/// A safetensors file of per-layer statistics that passes read layer by
/// layer: Fisher diagonals (`<module>.weight`), input absmax
/// (`<module>.input_absmax`).
class LayerStatsFile {
public:
  /// Reads `path`; nullopt with the reason in `why` when it cannot.
  static std::optional<LayerStatsFile> read(llvm::StringRef path,
                                            std::string &why);

  /// The values of the tensor for `name`: `name` itself or else the only
  /// key that differs by a leading module path (an export's wrapper prefix,
  /// on either side), decoded to f32, every value finite and not negative,
  /// of shape `shape` unless it is empty. Nullopt with the reason in `why`
  /// (naming the tensor, and `layer` when none matches).
  std::optional<std::vector<float>> values(llvm::StringRef name,
                                           llvm::StringRef layer,
                                           llvm::ArrayRef<int64_t> shape,
                                           std::string &why);

  /// The names of the tensors `values` never returned.
  std::vector<std::string> unread() const;

private:
  std::unique_ptr<llvm::MemoryBuffer> buffer;
  llvm::StringMap<SafetensorsTensor> tensors;
  llvm::StringSet<> used;
};

/// Replaces the linear layer `linear` by a `qopt.lora` with factors `a`
/// (r×in), `b` (out×r) and optionally a DoRA `magnitude`, a LoRA-XS
/// `middle` (r×r) and a SoRA `gate` (r), keeping its bias and module path.
LoRAOp attachLoRA(LinearOp linear, Value a, Value b, Value magnitude,
                  double alpha, bool rslora, double dropout,
                  Value middle = Value(), Value gate = Value());

/// RandLoRA (PEFT's `randlora` tuner) on `linear`: a `qopt.lora` whose
/// factors are computed (from reads of the parameters, made before `linear`)
/// from the shared frozen bases `basisA` (r×1×Mmin)
/// and `basisB` (Mmax×NB×r) and the layer's trainable `lambda` (r×nb) and
/// `gamma` (nb×m, m = min(out, in)) — the scaled side on the smaller
/// dimension, as PEFT orients them — with PEFT's scale `randloraAlpha / r`.
/// The op carries `qopt.randlora_alpha` for qopt-save-adapter.
LoRAOp attachRandLoRA(LinearOp linear, ParamOp basisA, ParamOp basisB,
                      ParamOp lambda, ParamOp gamma, double randloraAlpha,
                      double dropout);

/// The number of RandLoRA bases a layer of `out` x `in` features gets at
/// rank `r`: ceil(min(out, in) / r) (PEFT's full-rank count).
inline int64_t randloraBases(int64_t out, int64_t in, int64_t r) {
  return (std::min(out, in) + r - 1) / r;
}

/// Replaces the lookup `embedding` by a `qopt.lora_embedding` with factors
/// `a` (r×V) and `b` (D×r), keeping its module path.
LoRAEmbeddingOp attachEmbeddingLoRA(EmbeddingOp embedding, Value a, Value b,
                                    double alpha, bool rslora);

/// PEFT's principal initialisations of a layer with weight `w` (out×in):
/// PiSSA (`pissa`: exact top-`rank` SVD, A = √(S/scale)·Vᵀ,
/// B = U·√(S/scale)) or OLoRA (`pissa` false: QR, A = Rᵣ, B = Qᵣ). `w`
/// becomes the residual w - scale·B·A.
void principalFactors(bool pissa, int64_t rank, double scale,
                      ::qopt::dense::Matrix &w, ::qopt::dense::Matrix &a,
                      ::qopt::dense::Matrix &b);

/// PEFT's LoftQ (`loftq_init`, 4 bits) of a layer with weight `w`:
/// `iters` rounds of NF4-quantizing (bitsandbytes' blockwise, 64) the part
/// the adapter does not hold and taking the top-`rank` SVD of what the
/// quantization lost (B = U·√S, A = √S·Vᵀ; no scale). `w` becomes the
/// dequantized quantization of the last round.
void loftqFactors(::qopt::dense::Matrix &w, int64_t rank, int64_t iters,
                  ::qopt::dense::Matrix &a, ::qopt::dense::Matrix &b);

/// PEFT's LoRA-GA (`lora_ga_init`) of a layer with weight `w` and
/// estimated gradient `g` (both out × in): A and B from g's top 2·rank
/// singular components by `direction` (ArB2r, A2rBr, ArBr), B scaled by
/// `scaleKind` (stable with `stableGamma`, weight_svd, gd_scale — with the
/// adapter's `scale` —, unit); `w` becomes w - scale·B·A.
void loragaFactors(const ::qopt::dense::Matrix &g, ::qopt::dense::Matrix &w,
                   int64_t rank, double scale, llvm::StringRef direction,
                   llvm::StringRef scaleKind, double stableGamma,
                   ::qopt::dense::Matrix &a, ::qopt::dense::Matrix &b);

/// Marks `lora` as initialised by `init` (PiSSA, OLoRA, LoftQ), which
/// rewrote its base weight: `qopt.residual_init` (and `qopt.loftq_iter`),
/// which qopt-save-adapter writes into the config.
void markResidualInit(LoRAOp lora, llvm::StringRef init, int64_t loftqIter);

/// Gives `linear` a new, frozen weight parameter `<module>.weight` holding
/// `w`, for the residual a principal initialisation leaves. Null after an
/// error.
ParamOp replaceWeight(LinearOp linear, llvm::StringRef module,
                      const ::qopt::dense::Matrix &w, SymbolTable &symbols);

/// The selection that pass options spell (`target-modules`,
/// `exclude-modules`, `layers-to-transform`, `layers-pattern`): a single
/// entry with regular-expression characters is a full-match regular
/// expression (PEFT's string form), `all-linear` the shorthand.
LoraSelection selectionFromOptions(llvm::ArrayRef<std::string> targets,
                                   llvm::ArrayRef<std::string> excludes,
                                   llvm::ArrayRef<int64_t> layers,
                                   llvm::ArrayRef<std::string> patterns);

/// Translates a Python `re` pattern into a POSIX extended one (what
/// llvm::Regex takes), or fails with a message.
llvm::Expected<std::string> translatePythonRegex(llvm::StringRef pattern);

/// A layer that an adapter may target: a linear-like op with its module
/// path (empty when the model does not give one).
struct LinearLayer {
  Operation *op;
  std::string name;
  /// The model's output head (PEFT's `get_output_embeddings()`, which
  /// "all-linear" leaves out): a linear layer whose output the function
  /// returns and whose out-features equal an embedding table's rows.
  bool outputHead;
};

/// Every linear-like op of `module` in order, with its module path.
std::vector<LinearLayer> collectLinearLayers(ModuleOp module);

/// Every embedding lookup of `module` (qopt.embedding, or
/// qopt.lora_embedding once adapted) in order, with its module path: PEFT's
/// lora.Embedding targets. "all-linear" never selects them.
std::vector<LinearLayer> collectEmbeddingLayers(ModuleOp module);

/// A LoraSelection with its patterns compiled.
class LoraTargets {
public:
  /// Fails with a message naming the bad pattern. `layers` are the
  /// candidates (for "all-linear": the leaf names of every layer but the
  /// output head become the targets, as PEFT does).
  static llvm::Expected<LoraTargets> create(const LoraSelection &selection,
                                            llvm::ArrayRef<LinearLayer> layers);

  /// Whether the layer named `name` gets an adapter.
  bool matches(llvm::StringRef name) const;
  /// Whether the embedding named `name` gets one ("all-linear" selects
  /// linear layers only).
  bool matchesEmbedding(llvm::StringRef name) const {
    return !selection.allLinear && matches(name);
  }
  /// A message when two rank_pattern (or alpha_pattern) keys with different
  /// values match `name`: PEFT takes the first in the file's order, which a
  /// parsed JSON object does not keep.
  std::optional<std::string> ambiguity(llvm::StringRef name) const;
  /// Its rank and alpha (rank_pattern / alpha_pattern, else r / lora_alpha).
  int64_t rankFor(llvm::StringRef name) const;
  double alphaFor(llvm::StringRef name) const;

private:
  LoraTargets() = default;
  bool layerIndexMatches(llvm::StringRef name) const;

  LoraSelection selection;
  std::optional<llvm::Regex> target, exclude;
  std::vector<llvm::Regex> layerPatterns;
  std::vector<std::pair<llvm::Regex, int64_t>> ranks;
  std::vector<std::pair<llvm::Regex, double>> alphas;
};

/// The weight passes' selection (qopt-quantize-weights, fake-quant and LSQ
/// insertion): PEFT's `targets` (empty: "all-linear", every linear layer
/// but the output head) and `excludes` over `layers`.
llvm::Expected<LoraTargets>
selectWeightLayers(llvm::ArrayRef<std::string> targets,
                   llvm::ArrayRef<std::string> excludes,
                   const std::vector<LinearLayer> &layers);

/// The float `qopt.linear` layers of `module` that the weight passes'
/// selection (`targets`, `excludes`) picks, for a pass that rewrites float
/// weights before quantization and adapters: a selected layer with an
/// adapter or a quantized weight is an error saying to `action` (`smooth`,
/// `decompose`) first; so is a selection without layers.
llvm::Expected<llvm::SmallVector<LinearOp>>
selectFloatLinears(ModuleOp module, llvm::ArrayRef<std::string> targets,
                   llvm::ArrayRef<std::string> excludes,
                   llvm::StringRef action);

} // namespace mlir::qopt

#endif // QOPT_DIALECT_QOPT_TRANSFORMS_LORATARGETS_H
