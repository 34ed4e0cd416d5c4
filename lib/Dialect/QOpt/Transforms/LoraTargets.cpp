//===- LoraTargets.cpp - PEFT's LoraConfig: which layers get adapters -----===//

#include "qopt/Dialect/QOpt/Transforms/LoraTargets.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "qopt/Support/PeftConfig.h"
#include "llvm/ADT/StringExtras.h"

#include "llvm/ADT/StringSet.h"
#include "llvm/Support/JSON.h"

using namespace mlir;
using namespace mlir::qopt;

llvm::Expected<std::string>
mlir::qopt::translatePythonRegex(llvm::StringRef pattern) {
  auto fail = [&](const llvm::Twine &why) {
    return llvm::createStringError("regular expression '" + pattern +
                                   "': " + why);
  };
  std::string out;
  bool inBracket = false;
  size_t bracketStart = 0;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    char next = i + 1 < pattern.size() ? pattern[i + 1] : '\0';
    if (c == '\\') {
      if (i + 1 >= pattern.size())
        return fail("ends with a backslash");
      ++i;
      const char *klass = nullptr;
      bool negated = false;
      switch (next) {
      case 'd':
        klass = "0-9";
        break;
      case 'D':
        klass = "0-9", negated = true;
        break;
      case 'w':
        klass = "A-Za-z0-9_";
        break;
      case 'W':
        klass = "A-Za-z0-9_", negated = true;
        break;
      case 's':
        klass = "[:space:]";
        break;
      case 'S':
        klass = "[:space:]", negated = true;
        break;
      default:
        break;
      }
      if (klass) {
        if (inBracket && negated)
          return fail(llvm::Twine("\\") + llvm::Twine(next) +
                      " inside brackets is not supported");
        out += inBracket ? std::string(klass)
                         : std::string(negated ? "[^" : "[") + klass + "]";
        continue;
      }
      if (llvm::isDigit(next))
        return fail("back-references are not supported");
      if (llvm::isAlpha(next))
        return fail(llvm::Twine("\\") + llvm::Twine(next) +
                    " is not supported");
      if (inBracket) {
        // POSIX brackets take characters literally, but these are special.
        if (next == ']' || next == '^' || next == '-' || next == '\\')
          return fail(llvm::Twine("an escaped '") + llvm::Twine(next) +
                      "' inside brackets is not supported");
        out += next;
      } else {
        out += '\\';
        out += next;
      }
      continue;
    }
    if (inBracket) {
      // A ']' right after '[' or '[^' is a literal.
      if (c == ']' && i > bracketStart)
        inBracket = false;
      out += c;
      continue;
    }
    if (c == '[') {
      inBracket = true;
      out += c;
      if (next == '^') {
        out += next;
        ++i;
      }
      bracketStart = i + 1;
      continue;
    }
    if (c == '(' && next == '?')
      return fail("(?...) groups are not supported");
    if ((c == '*' || c == '+' || c == '?' || c == '}') && next == '?')
      return fail("lazy quantifiers are not supported");
    out += c;
    if (c == '{' && next == ',') // Python's {,n} is {0,n}
      out += '0';
  }
  if (inBracket)
    return fail("unterminated '['");
  return out;
}

static bool looksLikeRegex(llvm::StringRef s) {
  return s.find_first_of("*+?()[]{}|^$\\") != llvm::StringRef::npos;
}

LoraSelection mlir::qopt::selectionFromOptions(
    llvm::ArrayRef<std::string> targets, llvm::ArrayRef<std::string> excludes,
    llvm::ArrayRef<int64_t> layers, llvm::ArrayRef<std::string> patterns) {
  LoraSelection s;
  if (targets.size() == 1 &&
      llvm::StringRef(targets[0]).equals_insensitive("all-linear"))
    s.allLinear = true;
  else if (targets.size() == 1 && looksLikeRegex(targets[0]))
    s.targetRegex = targets[0];
  else
    s.targetModules.assign(targets.begin(), targets.end());
  if (excludes.size() == 1 && looksLikeRegex(excludes[0]))
    s.excludeRegex = excludes[0];
  else
    s.excludeModules.assign(excludes.begin(), excludes.end());
  s.layersToTransform.assign(layers.begin(), layers.end());
  s.layersPattern.assign(patterns.begin(), patterns.end());
  return s;
}

/// The ERE `^(prefix)(pattern)$` compiled, or an error naming `pattern`.
static llvm::Expected<llvm::Regex> compile(llvm::StringRef pattern,
                                           llvm::StringRef prefix = "") {
  llvm::Expected<std::string> ere = translatePythonRegex(pattern);
  if (!ere)
    return ere.takeError();
  llvm::Regex regex("^" + prefix.str() + "(" + *ere + ")$");
  std::string error;
  if (!regex.isValid(error))
    return llvm::createStringError("regular expression '" + pattern +
                                   "': " + error);
  return std::move(regex);
}

/// `v` through casts and reshapes that only it reads.
static Value throughReshapes(Value v) {
  while (v.hasOneUse()) {
    Operation *user = *v.getUsers().begin();
    if (!isa<tensor::CastOp, tensor::ReshapeOp, tensor::ExpandShapeOp,
             tensor::CollapseShapeOp>(user))
      break;
    v = user->getResult(0);
  }
  return v;
}

std::vector<LinearLayer> mlir::qopt::collectLinearLayers(ModuleOp module) {
  llvm::DenseSet<int64_t> vocabularies;
  module.walk([&](Operation *op) {
    if (!isa<EmbeddingOp, LoRAEmbeddingOp>(op))
      return;
    Type type = op->getOperand(1).getType();
    ArrayRef<int64_t> shape = isa<QTensorType>(type)
                                  ? cast<QTensorType>(type).getShape()
                                  : cast<RankedTensorType>(type).getShape();
    vocabularies.insert(shape[0]);
  });
  std::vector<LinearLayer> layers;
  module.walk([&](LinearLikeOpInterface op) {
    StringAttr name = op.getModuleAttr();
    Value w = op.getWeight();
    int64_t out = isa<QTensorType>(w.getType())
                      ? cast<QTensorType>(w.getType()).getShape()[0]
                      : cast<RankedTensorType>(w.getType()).getDimSize(0);
    Value y = throughReshapes(op->getResult(0));
    bool returned = llvm::any_of(y.getUsers(), [](Operation *user) {
      return isa<func::ReturnOp>(user);
    });
    layers.push_back({op, name ? name.str() : std::string(),
                      returned && vocabularies.contains(out)});
  });
  return layers;
}

std::vector<LinearLayer> mlir::qopt::collectEmbeddingLayers(ModuleOp module) {
  std::vector<LinearLayer> layers;
  module.walk([&](Operation *op) {
    StringAttr name;
    if (auto e = dyn_cast<EmbeddingOp>(op))
      name = e.getModuleAttr();
    else if (auto l = dyn_cast<LoRAEmbeddingOp>(op))
      name = l.getModuleAttr();
    else
      return;
    layers.push_back({op, name ? name.str() : std::string(), false});
  });
  return layers;
}

llvm::Expected<LoraTargets>
LoraTargets::create(const LoraSelection &selection,
                    llvm::ArrayRef<LinearLayer> layers) {
  LoraTargets t;
  t.selection = selection;
  if (selection.allLinear) {
    // PEFT replaces "all-linear" by the leaf names of every linear layer
    // but the output head.
    llvm::StringSet<> leaves;
    for (const LinearLayer &layer : layers)
      if (!layer.outputHead && !layer.name.empty()) {
        llvm::StringRef leaf = llvm::StringRef(layer.name).rsplit('.').second;
        leaves.insert(leaf.empty() ? llvm::StringRef(layer.name) : leaf);
      }
    t.selection.targetModules.clear();
    for (const auto &leaf : leaves)
      t.selection.targetModules.push_back(leaf.getKey().str());
    llvm::sort(t.selection.targetModules);
  }
  if (selection.targetRegex && !selection.allLinear) {
    auto r = compile(*selection.targetRegex);
    if (!r)
      return r.takeError();
    t.target = std::move(*r);
  }
  if (selection.excludeRegex) {
    auto r = compile(*selection.excludeRegex);
    if (!r)
      return r.takeError();
    t.exclude = std::move(*r);
  }
  for (const std::string &p : selection.layersPattern) {
    auto r = compile(p, "(.*\\.)?");
    if (!r)
      return r.takeError();
    t.layerPatterns.push_back(std::move(*r));
  }
  for (const auto &[key, rank] : selection.rankPattern) {
    if (rank <= 0)
      return llvm::createStringError("rank_pattern '" + key +
                                     "': the rank must be positive, got " +
                                     std::to_string(rank));
    auto r = compile(key, "(.*\\.)?");
    if (!r)
      return r.takeError();
    t.ranks.push_back({std::move(*r), rank});
  }
  for (const auto &[key, alpha] : selection.alphaPattern) {
    auto r = compile(key, "(.*\\.)?");
    if (!r)
      return r.takeError();
    t.alphas.push_back({std::move(*r), alpha});
  }
  return std::move(t);
}

/// Whether `name` equals an entry of `list` or ends with "." + entry.
static bool inList(llvm::StringRef name, llvm::ArrayRef<std::string> list) {
  return llvm::any_of(list, [&](const std::string &entry) {
    return name == entry ||
           (name.size() > entry.size() && name.ends_with(entry) &&
            name[name.size() - entry.size() - 1] == '.');
  });
}

bool LoraTargets::layerIndexMatches(llvm::StringRef name) const {
  SmallVector<llvm::StringRef> segments;
  name.split(segments, '.');
  // The first numbered segment that has a segment before it (the
  // `layers` of `model.layers.3.`) and one after it; with layers_pattern,
  // the first whose prefix ends with a pattern.
  std::optional<int64_t> index;
  for (size_t i = 1; i + 1 < segments.size() && !index; ++i) {
    int64_t value;
    if (segments[i].empty() || segments[i].getAsInteger(10, value) ||
        !llvm::all_of(segments[i], llvm::isDigit))
      continue;
    if (layerPatterns.empty()) {
      if (i >= 2)
        index = value;
      continue;
    }
    std::string prefix =
        llvm::join(llvm::ArrayRef(segments).take_front(i), ".");
    for (const llvm::Regex &pattern : layerPatterns)
      if (pattern.match(prefix)) {
        index = value;
        break;
      }
  }
  return index && llvm::is_contained(selection.layersToTransform, *index);
}

bool LoraTargets::matches(llvm::StringRef name) const {
  if (name.empty())
    return false;
  if (exclude ? exclude->match(name) : inList(name, selection.excludeModules))
    return false;
  if (target)
    return target->match(name);
  if (llvm::is_contained(selection.targetModules, name))
    return true;
  if (!inList(name, selection.targetModules))
    return false;
  return selection.layersToTransform.empty() || layerIndexMatches(name);
}

std::optional<std::string> LoraTargets::ambiguity(llvm::StringRef name) const {
  // JSON objects reach qopt unordered, while PEFT takes the first matching
  // key in the file's order: two matching keys must agree.
  auto check = [&](const auto &patterns, llvm::StringRef option,
                   const auto &keys) -> std::optional<std::string> {
    for (size_t i = 0; i < patterns.size(); ++i)
      for (size_t j = i + 1; j < patterns.size(); ++j)
        if (patterns[i].first.match(name) && patterns[j].first.match(name) &&
            patterns[i].second != patterns[j].second)
          return (option + " keys '" + keys[i].first + "' and '" +
                  keys[j].first + "' both match module '" + name +
                  "' with different values")
              .str();
    return std::nullopt;
  };
  if (auto r = check(ranks, "rank_pattern", selection.rankPattern))
    return r;
  return check(alphas, "alpha_pattern", selection.alphaPattern);
}

int64_t LoraTargets::rankFor(llvm::StringRef name) const {
  for (const auto &[regex, rank] : ranks)
    if (regex.match(name))
      return rank;
  return selection.r;
}

double LoraTargets::alphaFor(llvm::StringRef name) const {
  for (const auto &[regex, alpha] : alphas)
    if (regex.match(name))
      return alpha;
  return selection.loraAlpha;
}

LoRAOp mlir::qopt::attachLoRA(LinearOp linear, Value a, Value b,
                              Value magnitude, double alpha, bool rslora,
                              double dropout, Value middle, Value gate) {
  OpBuilder builder(linear);
  auto lora = LoRAOp::create(
      builder, linear.getLoc(), linear.getType(), linear.getInput(),
      linear.getWeight(), a, b, linear.getBias(), magnitude, middle, gate,
      builder.getF64FloatAttr(alpha),
      LoRAScalingAttr::get(builder.getContext(), rslora
                                                     ? LoRAScaling::RsLoRA
                                                     : LoRAScaling::Standard),
      builder.getF64FloatAttr(dropout), linear.getModuleAttr());
  linear.replaceAllUsesWith(lora.getResult());
  linear.erase();
  return lora;
}

LoRAOp mlir::qopt::attachRandLoRA(LinearOp linear, ParamOp basisAParam,
                                  ParamOp basisBParam, ParamOp lambdaParam,
                                  ParamOp gammaParam, double randloraAlpha,
                                  double dropout) {
  OpBuilder builder(linear);
  Location loc = linear.getLoc();
  auto load = [&](ParamOp p) -> Value {
    return LoadParamOp::create(builder, loc, p.getTensorType(), p.getSymName());
  };
  Value basisA = load(basisAParam), basisB = load(basisBParam),
        lambda = load(lambdaParam), gamma = load(gammaParam);
  auto wType = linear.getWeight().getType();
  ArrayRef<int64_t> w = isa<QTensorType>(wType)
                            ? cast<QTensorType>(wType).getShape()
                            : cast<RankedTensorType>(wType).getShape();
  int64_t n = w[0], k = w[1];
  auto lambdaType = cast<RankedTensorType>(lambda.getType());
  int64_t r = lambdaType.getDimSize(0), nb = lambdaType.getDimSize(1);
  Type element = lambdaType.getElementType();
  int64_t m = std::min(n, k), rank = r * nb;
  Value scaled = RandLoRAScaleOp::create(
      builder, loc, RankedTensorType::get({rank, m}, element), basisA, lambda,
      gamma);
  Value flat = RandLoRAFlattenOp::create(
      builder, loc, RankedTensorType::get({std::max(n, k), rank}, element),
      basisB);
  auto transposed = [&](Value v) -> Value {
    auto type = cast<RankedTensorType>(v.getType());
    Value init = tensor::EmptyOp::create(
        builder, loc, {type.getDimSize(1), type.getDimSize(0)}, element);
    return linalg::TransposeOp::create(builder, loc, v, init,
                                       ArrayRef<int64_t>{1, 0})
        .getResult()[0];
  };
  // PEFT scales the basis on the smaller dimension: the input's when
  // in <= out (A = scaled, B = flat), else the output's.
  Value a = k <= n ? scaled : transposed(flat);
  Value b = k <= n ? flat : transposed(scaled);
  // alpha / rank = randlora_alpha / r.
  LoRAOp lora =
      attachLoRA(linear, a, b, Value(), randloraAlpha * nb, false, dropout);
  lora->setAttr("qopt.randlora_alpha", builder.getF64FloatAttr(randloraAlpha));
  return lora;
}

LoRAEmbeddingOp mlir::qopt::attachEmbeddingLoRA(EmbeddingOp embedding, Value a,
                                                Value b, double alpha,
                                                bool rslora) {
  OpBuilder builder(embedding);
  auto lora = LoRAEmbeddingOp::create(
      builder, embedding.getLoc(), embedding.getType(), embedding.getIds(),
      embedding.getWeight(), a, b, builder.getF64FloatAttr(alpha),
      LoRAScalingAttr::get(builder.getContext(), rslora
                                                     ? LoRAScaling::RsLoRA
                                                     : LoRAScaling::Standard),
      embedding.getModuleAttr());
  embedding.replaceAllUsesWith(lora.getResult());
  embedding.erase();
  return lora;
}

//===----------------------------------------------------------------------===//
// adapter_config.json
//===----------------------------------------------------------------------===//

namespace {
namespace json = llvm::json;

/// Whether `v` is the "nothing" value of a key: null, false, "", [], {}.
bool isUnset(const json::Value &v) {
  if (v.getAsNull())
    return true;
  if (auto b = v.getAsBoolean())
    return !*b;
  if (auto s = v.getAsString())
    return s->empty();
  if (auto *a = v.getAsArray())
    return a->empty();
  if (auto *o = v.getAsObject())
    return o->empty();
  return false;
}

llvm::Error keyError(llvm::StringRef key, const llvm::Twine &why) {
  return llvm::createStringError("adapter_config.json: '" + key + "' " + why);
}

/// A string, or a list of strings, into `list` (or `regex` for a string
/// when given).
llvm::Error stringOrList(llvm::StringRef key, const json::Value &v,
                         std::vector<std::string> &list,
                         std::optional<std::string> *regex) {
  if (auto s = v.getAsString()) {
    if (regex)
      *regex = s->str();
    else
      list.push_back(s->str());
    return llvm::Error::success();
  }
  if (auto *a = v.getAsArray()) {
    for (const json::Value &e : *a) {
      auto s = e.getAsString();
      if (!s)
        return keyError(key, "must hold strings");
      list.push_back(s->str());
    }
    return llvm::Error::success();
  }
  return keyError(key, "must be a string or a list of strings");
}
} // namespace

llvm::Expected<PeftLoraConfig>
mlir::qopt::parsePeftLoraConfig(llvm::StringRef text) {
  llvm::Expected<json::Value> parsed = json::parse(text);
  if (!parsed)
    return llvm::createStringError("adapter_config.json is not JSON: " +
                                   llvm::toString(parsed.takeError()));
  json::Object *o = parsed->getAsObject();
  if (!o)
    return llvm::createStringError("adapter_config.json is not a JSON object");
  PeftLoraConfig c;
  LoraSelection &sel = c.selection;
  // RandLoraConfig's own keys, checked against peft_type at the end (a
  // parsed JSON object has no order).
  std::vector<std::string> randloraKeys, loraKeys;
  for (const auto &[k, v] : *o) {
    llvm::StringRef key = k;
    auto number = [&](double &out) -> llvm::Error {
      if (auto d = v.getAsNumber()) {
        out = *d;
        return llvm::Error::success();
      }
      return keyError(key, "must be a number");
    };
    auto flag = [&](bool &out) -> llvm::Error {
      if (auto b = v.getAsBoolean()) {
        out = *b;
        return llvm::Error::success();
      }
      return keyError(key, "must be true or false");
    };
    llvm::Error err = llvm::Error::success();
    (void)static_cast<bool>(err); // checked: the branches may assign it
    if (key == "peft_type") {
      std::optional<llvm::StringRef> type = v.getAsString();
      if (type == std::optional<llvm::StringRef>("RANDLORA"))
        c.randlora = true;
      else if (type != std::optional<llvm::StringRef>("LORA"))
        return keyError(key, "is not LORA or RANDLORA: only LoRA and "
                             "RandLoRA adapters are supported");
    } else if (key == "randlora_alpha" || key == "randlora_dropout" ||
               key == "projection_prng_key" || key == "save_projection" ||
               key == "sparse" || key == "very_sparse" ||
               key == "init_weights") {
      randloraKeys.push_back(key.str());
      if (key == "randlora_alpha")
        err = number(sel.loraAlpha);
      else if (key == "randlora_dropout")
        err = number(c.loraDropout);
      else if (key == "save_projection")
        err = flag(c.randloraSaveProjection);
      else if (key == "init_weights")
        err = flag(c.randloraInitWeights);
      else if (key == "sparse" || key == "very_sparse") {
        bool sparse = false;
        err = flag(sparse);
        c.randloraSparse |= sparse;
      } else if (!v.getAsInteger())
        return keyError(key, "must be an integer");
    } else if (key == "r") {
      auto r = v.getAsInteger();
      if (!r || *r <= 0)
        return keyError(key, "must be a positive integer");
      sel.r = *r;
    } else if (key == "lora_alpha") {
      err = number(sel.loraAlpha);
    } else if (key == "lora_dropout") {
      err = number(c.loraDropout);
    } else if (key == "use_rslora") {
      err = flag(c.useRslora);
    } else if (key == "use_dora") {
      err = flag(c.useDora);
    } else if (key == "target_modules") {
      if (v.getAsNull())
        return keyError(key, "is null: qopt does not guess PEFT's per-model "
                             "default targets; name them");
      auto s = v.getAsString();
      if (s && s->equals_insensitive("all-linear"))
        sel.allLinear = true;
      else
        err = stringOrList(key, v, sel.targetModules, &sel.targetRegex);
    } else if (key == "exclude_modules") {
      if (!v.getAsNull())
        err = stringOrList(key, v, sel.excludeModules, &sel.excludeRegex);
    } else if (key == "layers_to_transform") {
      if (auto i = v.getAsInteger())
        sel.layersToTransform.push_back(*i);
      else if (auto *a = v.getAsArray()) {
        for (const json::Value &e : *a) {
          auto i = e.getAsInteger();
          if (!i)
            return keyError(key, "must hold integers");
          sel.layersToTransform.push_back(*i);
        }
      } else if (!v.getAsNull())
        return keyError(key, "must be an integer or a list of integers");
    } else if (key == "layers_pattern") {
      if (!v.getAsNull())
        err = stringOrList(key, v, sel.layersPattern, nullptr);
    } else if (key == "rank_pattern" || key == "alpha_pattern") {
      auto *patterns = v.getAsObject();
      if (!patterns && !v.getAsNull())
        return keyError(key, "must be an object");
      if (patterns)
        for (const auto &[pk, pv] : *patterns) {
          if (key == "rank_pattern") {
            auto i = pv.getAsInteger();
            if (!i)
              return keyError(key, "entry '" + llvm::StringRef(pk) +
                                       "' must be an integer");
            sel.rankPattern.push_back({pk.str(), *i});
          } else {
            auto d = pv.getAsNumber();
            if (!d)
              return keyError(key, "entry '" + llvm::StringRef(pk) +
                                       "' must be a number");
            sel.alphaPattern.push_back({pk.str(), *d});
          }
        }
    } else if (key == "bias") {
      if (v.getAsString() != std::optional<llvm::StringRef>("none"))
        return keyError(key, "is not \"none\": training or loading biases is "
                             "not supported");
    } else if (key == "init_lora_weights") {
      if (auto b = v.getAsBoolean())
        c.initLoraWeights = *b ? "true" : "false";
      else if (auto s = v.getAsString())
        // LoRA-SB's spelling is qopt's own: both are taken, one is kept.
        c.initLoraWeights = s->lower() == "lora_sb" ? "lora-sb" : s->str();
    } else if (key == "loftq_config") {
      // {} unless init_lora_weights is "loftq"; then LoftQConfig's fields.
      if (v.getAsNull())
        continue;
      const json::Object *loftq = v.getAsObject();
      if (!loftq)
        return keyError(key, "must be an object (LoftQConfig)");
      for (const auto &[field, value] : *loftq) {
        std::optional<int64_t> n = value.getAsInteger();
        if (field == "loftq_bits" && n)
          c.loftqBits = *n;
        else if (field == "loftq_iter" && n)
          c.loftqIter = *n;
        else
          return keyError(key, ("has '" + llvm::StringRef(field) +
                                "', which is not loftq_bits or loftq_iter "
                                "with an integer")
                                   .str());
      }
    } else if (key == "eva_config") {
      // null unless init_lora_weights is "eva"; then EvaConfig's fields.
      if (v.getAsNull())
        continue;
      const json::Object *eva = v.getAsObject();
      if (!eva)
        return keyError(key, "must be an object (EvaConfig)");
      PeftLoraConfig::Eva &e = c.eva;
      for (const auto &[field, value] : *eva) {
        llvm::StringRef f = field;
        std::optional<double> d = value.getAsNumber();
        std::optional<bool> b = value.getAsBoolean();
        std::optional<int64_t> i = value.getAsInteger();
        if (f == "rho" && d && *d >= 1)
          e.rho = *d;
        else if (f == "tau" && d && *d >= 0 && *d <= 1)
          e.tau = *d;
        else if (f == "use_label_mask" && b)
          e.useLabelMask = *b;
        else if (f == "label_mask_value" && i)
          e.labelMaskValue = *i;
        else if (f == "whiten" && b)
          e.whiten = *b;
        else if (f == "adjust_scaling_factors" && b)
          e.adjustScalingFactors = *b;
        else
          return keyError(key,
                          ("has '" + f +
                           "' with a value EvaConfig does not take (rho >= 1, "
                           "0 <= tau <= 1, use_label_mask, whiten and "
                           "adjust_scaling_factors true or false, "
                           "label_mask_value an integer)")
                              .str());
      }
    } else if (key == "lora_ga_config") {
      // null unless init_lora_weights is "lora_ga"; then LoraGAConfig's.
      if (v.getAsNull())
        continue;
      const json::Object *ga = v.getAsObject();
      if (!ga)
        return keyError(key, "must be an object (LoraGAConfig)");
      PeftLoraConfig::LoraGA &g = c.loraGa;
      for (const auto &[field, value] : *ga) {
        llvm::StringRef f = field;
        std::optional<llvm::StringRef> str = value.getAsString();
        std::optional<double> d = value.getAsNumber();
        if (f == "direction" && str &&
            llvm::is_contained({"ArBr", "A2rBr", "ArB2r", "random"}, *str))
          g.direction = str->str();
        else if (f == "scale" && str &&
                 llvm::is_contained(
                     {"stable", "weight_svd", "gd_scale", "unit"}, *str))
          g.scale = str->str();
        else if (f == "stable_gamma" && d && *d > 0)
          g.stableGamma = *d;
        else
          return keyError(key,
                          ("has '" + f +
                           "' with a value LoraGAConfig does not take "
                           "(direction ArBr, A2rBr, ArB2r or random; scale "
                           "stable, weight_svd, gd_scale or unit; "
                           "stable_gamma a positive number)")
                              .str());
      }
    } else if (key == "lora_sb_config") {
      // qopt's key (PEFT has no LoRA-SB): {"lr": η}.
      if (v.getAsNull())
        continue;
      const json::Object *sb = v.getAsObject();
      if (!sb)
        return keyError(key, "must be an object ({\"lr\": a positive number})");
      for (const auto &[field, value] : *sb) {
        std::optional<double> d = value.getAsNumber();
        if (llvm::StringRef(field) == "lr" && d && *d > 0)
          c.loraSb.lr = *d;
        else
          return keyError(key, ("has '" + llvm::StringRef(field) +
                                "' with a value it does not take (lr a "
                                "positive number)")
                                   .str());
      }
    } else if (::qopt::peft::isInformationalKey(key.str().c_str())) {
      // Describes the adapter only.
    } else if (!isUnset(v)) {
      // modules_to_save, lora_bias, target_parameters, layer_replication,
      // use_qalora, trainable_token_indices, *_config, … and keys of later
      // PEFT versions: they change the model, and are not implemented.
      return keyError(key, "is set, and qopt does not support it");
    }
    if (err)
      return std::move(err);
    for (llvm::StringRef loraOnly :
         {"lora_alpha", "lora_dropout", "use_rslora", "use_dora",
          "init_lora_weights", "rank_pattern", "alpha_pattern"})
      if (key == loraOnly && !isUnset(v) &&
          !(key == "init_lora_weights" && v.getAsBoolean() == true))
        loraKeys.push_back(key.str());
  }
  if (c.randlora) {
    // RandLoraConfig's defaults where the file leaves a field out.
    if (!o->get("r"))
      sel.r = 32;
    if (!o->get("randlora_alpha"))
      sel.loraAlpha = 640;
    if (!loraKeys.empty())
      return keyError(loraKeys.front(),
                      "is a LoraConfig field, but peft_type is RANDLORA");
    c.initLoraWeights = "randlora";
  } else if (!randloraKeys.empty()) {
    return keyError(randloraKeys.front(),
                    "is a RandLoraConfig field, but peft_type is LORA");
  }
  return c;
}

llvm::Expected<LoraTargets>
mlir::qopt::selectWeightLayers(llvm::ArrayRef<std::string> targets,
                               llvm::ArrayRef<std::string> excludes,
                               const std::vector<LinearLayer> &layers) {
  static const std::string allLinear[] = {"all-linear"};
  return LoraTargets::create(
      selectionFromOptions(targets.empty() ? allLinear : targets, excludes, {},
                           {}),
      layers);
}

std::optional<LayerStatsFile> LayerStatsFile::read(StringRef path,
                                                   std::string &why) {
  LayerStatsFile file;
  auto buffer = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
  if (!buffer) {
    why = buffer.getError().message();
    return std::nullopt;
  }
  file.buffer = std::move(*buffer);
  auto tensors = readFloatSafetensors(*file.buffer, path);
  if (!tensors) {
    why = llvm::toString(tensors.takeError());
    return std::nullopt;
  }
  file.tensors = std::move(*tensors);
  return file;
}

std::optional<std::vector<float>>
LayerStatsFile::values(StringRef name, StringRef layer, ArrayRef<int64_t> shape,
                       std::string &why) {
  std::optional<std::string> key;
  if (tensors.count(name))
    key = name.str();
  else
    for (const auto &entry : tensors) {
      StringRef k = entry.getKey();
      if (!name.ends_with(("." + k).str()) && !k.ends_with(("." + name).str()))
        continue;
      if (key) {
        why = "several tensors match '" + name.str() + "'";
        return std::nullopt;
      }
      key = k.str();
    }
  if (!key) {
    why = "no tensor '" + name.str() + "' for layer '" + layer.str() + "'";
    return std::nullopt;
  }
  used.insert(*key);
  const SafetensorsTensor &t = tensors.find(*key)->second;
  if (!shape.empty() && ArrayRef<int64_t>(t.shape) != shape) {
    why = "tensor '" + *key + "' is not " +
          llvm::join(llvm::map_range(
                         shape, [](int64_t d) { return std::to_string(d); }),
                     "x") +
          " like the weight of '" + layer.str() + "'";
    return std::nullopt;
  }
  std::vector<float> out(t.count);
  ::qopt::dense::decodeFloats(t.kind, t.data, t.count, out.data());
  if (llvm::any_of(out,
                   [](float v) { return !(v >= 0) || !std::isfinite(v); })) {
    why = "tensor '" + *key + "' holds a negative, NaN or infinite value";
    return std::nullopt;
  }
  return out;
}

std::vector<std::string> LayerStatsFile::unread() const {
  std::vector<std::string> names;
  for (const auto &entry : tensors)
    if (!used.contains(entry.getKey()))
      names.push_back(entry.getKey().str());
  return names;
}

llvm::Expected<SmallVector<LinearOp>>
mlir::qopt::selectFloatLinears(ModuleOp module, ArrayRef<std::string> targets,
                               ArrayRef<std::string> excludes,
                               StringRef action) {
  std::vector<LinearLayer> layers = collectLinearLayers(module);
  llvm::Expected<LoraTargets> selected =
      selectWeightLayers(targets, excludes, layers);
  if (!selected)
    return selected.takeError();
  SmallVector<LinearOp> linears;
  for (const LinearLayer &layer : layers) {
    if (layer.name.empty() || !selected->matches(layer.name))
      continue;
    if (isa<LoRAOp>(layer.op))
      return llvm::createStringError(
          "'" + layer.name + "' has an adapter: " + action.str() +
          " the base model before adapters are inserted or loaded");
    auto linear = dyn_cast<LinearOp>(layer.op);
    if (!linear)
      continue;
    if (!isa<RankedTensorType>(linear.getWeight().getType()))
      return llvm::createStringError(
          "the weight of '" + layer.name +
          "' is quantized already: " + action.str() +
          " before quantizing (qoptc runs passes at the front of "
          "--graph-passes before --quantize)");
    linears.push_back(linear);
  }
  if (linears.empty())
    return llvm::createStringError("no linear layer is selected");
  return linears;
}
