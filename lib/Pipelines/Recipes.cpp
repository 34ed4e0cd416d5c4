//===- Recipes.cpp - Named compression / fine-tuning pipelines ------------===//

#include "qopt/Pipelines/Recipes.h"

#include "qopt/Dialect/QOpt/Transforms/LoraTargets.h"
#include "qopt/Dialect/QOpt/Transforms/Passes.h"
#include "qopt/Dialect/QOpt/Transforms/Weights.h"

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/YAMLParser.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>

using namespace mlir;
using namespace mlir::qopt;
namespace yaml = llvm::yaml;

namespace {

/// The recipes of recipes/*.yaml, embedded at configure time.
struct BuiltinRecipe {
  const char *name;
  const char *text;
};
constexpr BuiltinRecipe kBuiltinRecipes[] = {
#include "qopt/Pipelines/Recipes.inc"
};

constexpr llvm::StringLiteral kKeys[] = {"name",
                                         "summary",
                                         "paper",
                                         "graph-passes",
                                         "quantize",
                                         "quantize-modules",
                                         "quantize-activations",
                                         "adapter",
                                         "calibration",
                                         "int8-activations"};

/// A scalar as JSON: booleans, null, integers and numbers as themselves
/// unless quoted; everything else a string.
llvm::json::Value scalarToJson(yaml::ScalarNode *scalar) {
  SmallString<64> storage;
  StringRef value = scalar->getValue(storage);
  StringRef raw = scalar->getRawValue();
  if (raw.starts_with("\"") || raw.starts_with("'"))
    return value.str();
  if (value == "true" || value == "True")
    return true;
  if (value == "false" || value == "False")
    return false;
  if (value == "null" || value == "~")
    return nullptr;
  int64_t i;
  if (!value.getAsInteger(10, i))
    return i;
  double d;
  if (!value.getAsDouble(d))
    return d;
  return value.str();
}

class Parser {
public:
  Parser(StringRef path, StringRef text) : path(path.str()) {
    // The scanner's own messages name the file.
    stream = std::make_unique<yaml::Stream>(
        llvm::MemoryBufferRef(text, this->path), sourceMgr);
  }

  llvm::Expected<Recipe> parse() {
    Recipe recipe;
    auto doc = stream->begin();
    if (doc == stream->end() || stream->failed())
      return error(nullptr, "is empty or not YAML");
    auto *root = dyn_cast_or_null<yaml::MappingNode>(doc->getRoot());
    if (!root)
      return error(doc->getRoot(), "must be a mapping of recipe keys");
    for (yaml::KeyValueNode &kv : *root) {
      auto *keyNode = dyn_cast_or_null<yaml::ScalarNode>(kv.getKey());
      if (!keyNode)
        return error(kv.getKey(), "has a key that is not a name");
      SmallString<32> keyStorage;
      std::string key = keyNode->getValue(keyStorage).str();
      yaml::Node *value = kv.getValue();
      if (stream->failed())
        return error(value, "is not valid YAML");
      if (!llvm::is_contained(kKeys, key))
        return error(keyNode,
                     "unknown key '" + key + "' (a recipe has " +
                         llvm::join(llvm::map_range(kKeys,
                                                    [](llvm::StringLiteral k) {
                                                      return k.str();
                                                    }),
                                    ", ") +
                         ")");
      if (key == "adapter") {
        auto *map = dyn_cast_or_null<yaml::MappingNode>(value);
        if (!map)
          return error(value, "'adapter' must be a mapping of PEFT "
                              "LoraConfig keys");
        llvm::Expected<llvm::json::Value> json = toJson(map);
        if (!json)
          return json.takeError();
        recipe.adapterJson = llvm::formatv("{0}", *json).str();
        continue;
      }
      if (key == "quantize-modules") {
        auto *seq = dyn_cast_or_null<yaml::SequenceNode>(value);
        if (!seq)
          return error(value, "'quantize-modules' must be a list of names");
        for (yaml::Node &item : *seq) {
          auto *s = dyn_cast<yaml::ScalarNode>(&item);
          if (!s)
            return error(&item, "'quantize-modules' must be a list of names");
          SmallString<32> storage;
          recipe.quantizeModules.push_back(s->getValue(storage).str());
        }
        continue;
      }
      auto *scalar = dyn_cast_or_null<yaml::ScalarNode>(value);
      if (!scalar)
        return error(value, "'" + key + "' must be a single value");
      SmallString<64> storage;
      std::string text = scalar->getValue(storage).str();
      if (key == "int8-activations" || key == "calibration") {
        bool flag = text == "true" || text == "required";
        if (!flag && text != "false" && text != "none")
          return error(value, "'" + key + "' must be " +
                                  (key == "calibration" ? "required or none"
                                                        : "true or false") +
                                  ", got '" + text + "'");
        (key == "calibration" ? recipe.calibration : recipe.int8Activations) =
            flag;
        continue;
      }
      std::string *field = key == "name"           ? &recipe.name
                           : key == "summary"      ? &recipe.summary
                           : key == "paper"        ? &recipe.paper
                           : key == "graph-passes" ? &recipe.graphPasses
                           : key == "quantize-activations"
                               ? &recipe.quantizeActivations
                               : &recipe.quantize;
      *field = text;
    }
    if (stream->failed())
      return error(nullptr, "is not valid YAML");
    if (recipe.name.empty())
      return error(root, "has no 'name'");
    if (!recipe.quantize.empty()) {
      QuantizeSpec spec;
      if (std::optional<std::string> why =
              parseQuantizeSpec(recipe.quantize, spec))
        return error(root, "'quantize: " + recipe.quantize + "': " + *why);
    }
    if (!recipe.quantizeActivations.empty())
      if (std::optional<std::string> why =
              checkActivationSpec(recipe.quantizeActivations))
        return error(root, "'quantize-activations: " +
                               recipe.quantizeActivations + "': " + *why);
    if (!recipe.adapterJson.empty()) {
      llvm::Expected<PeftLoraConfig> config =
          parsePeftLoraConfig(recipe.adapterJson);
      if (!config)
        return error(root, "'adapter': " + llvm::toString(config.takeError()));
    }
    return recipe;
  }

private:
  llvm::Expected<llvm::json::Value> toJson(yaml::Node *node) {
    if (!node || stream->failed())
      return error(node, "is not valid YAML");
    if (isa<yaml::NullNode>(node))
      return llvm::json::Value(nullptr);
    if (auto *scalar = dyn_cast<yaml::ScalarNode>(node))
      return scalarToJson(scalar);
    if (auto *seq = dyn_cast<yaml::SequenceNode>(node)) {
      llvm::json::Array array;
      for (yaml::Node &item : *seq) {
        llvm::Expected<llvm::json::Value> v = toJson(&item);
        if (!v)
          return v.takeError();
        array.push_back(std::move(*v));
      }
      return llvm::json::Value(std::move(array));
    }
    if (auto *map = dyn_cast<yaml::MappingNode>(node)) {
      llvm::json::Object object;
      for (yaml::KeyValueNode &kv : *map) {
        auto *key = dyn_cast_or_null<yaml::ScalarNode>(kv.getKey());
        if (!key)
          return error(kv.getKey(), "has a key that is not a name");
        SmallString<32> storage;
        std::string name = key->getValue(storage).str();
        llvm::Expected<llvm::json::Value> v = toJson(kv.getValue());
        if (!v)
          return v.takeError();
        object[name] = std::move(*v);
      }
      return llvm::json::Value(std::move(object));
    }
    return error(node, "holds a value that is not a scalar, list or mapping");
  }

  llvm::Error error(yaml::Node *node, const Twine &message) {
    std::string where = path;
    if (node && node->getSourceRange().Start.isValid()) {
      auto [line, column] =
          sourceMgr.getLineAndColumn(node->getSourceRange().Start);
      where += ":" + std::to_string(line);
    }
    return llvm::createStringError("recipe " + where + ": " + message.str());
  }

  std::string path;
  llvm::SourceMgr sourceMgr;
  std::unique_ptr<yaml::Stream> stream;
};

} // namespace

std::vector<std::string> mlir::qopt::builtinRecipeNames() {
  std::vector<std::string> names;
  for (const BuiltinRecipe &r : kBuiltinRecipes)
    names.push_back(r.name);
  std::sort(names.begin(), names.end());
  return names;
}

llvm::Expected<Recipe> mlir::qopt::loadRecipe(StringRef nameOrPath) {
  if (nameOrPath.ends_with(".yaml") || nameOrPath.ends_with(".yml")) {
    auto file = llvm::MemoryBuffer::getFile(nameOrPath);
    if (!file)
      return llvm::createStringError("recipe " + nameOrPath.str() + ": " +
                                     file.getError().message());
    Parser parser(nameOrPath, (*file)->getBuffer());
    return parser.parse();
  }
  for (const BuiltinRecipe &r : kBuiltinRecipes)
    if (nameOrPath == r.name) {
      Parser parser("recipes/" + nameOrPath.str() + ".yaml", r.text);
      return parser.parse();
    }
  return llvm::createStringError(
      "no recipe '" + nameOrPath.str() + "' (built in: " +
      llvm::join(builtinRecipeNames(), ", ") + "; or give a .yaml file)");
}

llvm::Expected<std::string> mlir::qopt::recipePipeline(const Recipe &recipe,
                                                       MLIRContext *context) {
  auto [outlier, later] = splitOutlierPasses(recipe.graphPasses);
  PassManager pm(context, ModuleOp::getOperationName());
  std::string message;
  llvm::raw_string_ostream os(message);
  if (!outlier.empty() && failed(parsePassPipeline(outlier, pm, os)))
    return llvm::createStringError("recipe '" + recipe.name +
                                   "': graph-passes: " + message);
  if (!recipe.quantize.empty()) {
    QOptQuantizeWeightsPassOptions quantize;
    if (std::optional<std::string> why = quantizeWeightsOptions(
            recipe.quantize, recipe.quantizeModules, quantize))
      return llvm::createStringError("recipe '" + recipe.name +
                                     "': quantize: " + *why);
    pm.addPass(createQOptQuantizeWeightsPass(quantize));
  }
  if (!recipe.quantizeActivations.empty())
    pm.addPass(createQOptInsertFakeQuantPass(activationQuantOptions(
        recipe.quantizeActivations, recipe.quantizeModules)));
  if (!recipe.adapterJson.empty()) {
    llvm::Expected<PeftLoraConfig> config =
        parsePeftLoraConfig(recipe.adapterJson);
    if (!config)
      return config.takeError();
    // What qopt-insert-lora's options cannot spell: the printed pipeline
    // would select other layers or ranks than qoptc does.
    const LoraSelection &sel = config->selection;
    if (!sel.layersPattern.empty() || !sel.rankPattern.empty() ||
        !sel.alphaPattern.empty() || config->randlora ||
        (sel.targetRegex && !sel.allLinear))
      return llvm::createStringError(
          "recipe '" + recipe.name +
          "': its adapter (a target_modules regex, layers_pattern, "
          "rank_pattern, alpha_pattern or RandLoRA) has no pass-option "
          "form; qoptc --recipe applies it, qopt-opt cannot");
    pm.addPass(createQOptInsertLoRAPass(*config, "", 0, false, ""));
  }
  if (!later.empty() && failed(parsePassPipeline(later, pm, os)))
    return llvm::createStringError("recipe '" + recipe.name +
                                   "': graph-passes: " + message);
  std::string text;
  llvm::raw_string_ostream out(text);
  pm.printAsTextualPipeline(out);
  return text;
}

std::pair<std::string, std::string>
mlir::qopt::splitOutlierPasses(StringRef pipeline) {
  SmallVector<std::string> parts = splitPipeline(pipeline);
  size_t lead = 0;
  while (lead < parts.size() &&
         llvm::is_contained({"qopt-smooth", "qopt-rotate", "qopt-svdquant"},
                            pipelinePassName(parts[lead])))
    ++lead;
  auto join = [&](size_t from, size_t to) {
    return llvm::join(ArrayRef<std::string>(parts).slice(from, to - from), ",");
  };
  return {join(0, lead), join(lead, parts.size())};
}

SmallVector<std::string> mlir::qopt::splitPipeline(StringRef text) {
  SmallVector<std::string> parts;
  int depth = 0;
  std::string current;
  for (char c : text) {
    if (c == '{' || c == '(')
      ++depth;
    if (c == '}' || c == ')')
      --depth;
    if (c == ',' && depth == 0) {
      parts.push_back(StringRef(current).trim().str());
      current.clear();
      continue;
    }
    current += c;
  }
  if (!StringRef(current).trim().empty())
    parts.push_back(StringRef(current).trim().str());
  return parts;
}

StringRef mlir::qopt::pipelinePassName(StringRef element) {
  return element.take_until([](char c) { return c == '{' || c == '('; }).trim();
}

std::optional<std::string>
mlir::qopt::quantizeWeightsOptions(StringRef specText,
                                   ArrayRef<std::string> modules,
                                   QOptQuantizeWeightsPassOptions &quantize) {
  QuantizeSpec spec;
  if (std::optional<std::string> why = parseQuantizeSpec(specText, spec))
    return why;
  quantize.format = spec.format;
  quantize.block = spec.block;
  quantize.doubleQuant = spec.doubleQuant;
  quantize.group = spec.group;
  quantize.asym = spec.asym;
  quantize.clip = spec.mse ? "mse" : "minmax";
  quantize.perChannel = spec.perChannel;
  quantize.targetModules.assign(modules.begin(), modules.end());
  return std::nullopt;
}

QOptInsertFakeQuantPassOptions
mlir::qopt::activationQuantOptions(StringRef spec,
                                   ArrayRef<std::string> modules) {
  QOptInsertFakeQuantPassOptions options;
  options.activations = spec.str();
  for (const std::string &m : modules)
    options.targetModules.push_back(m);
  return options;
}
