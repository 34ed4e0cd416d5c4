//===- ONNXExport.h - The rewritten model as standard ONNX ------*- C++ -*-===//
//
// `qoptc --export-onnx` writes the model after its graph passes back as an
// ONNX file that onnxruntime runs. The passes rewrite linear layers (weights
// quantized, adapters and low-rank branches added, rotations and smoothing
// put before them) and change parameters (folded scales, rotated
// embeddings); everything else is the imported graph unchanged. So the
// export starts from the original ModelProto and replaces, for each linear
// layer, the nodes computing its output by nodes computing the rewritten
// layer, and writes changed parameters into their initializers. What links
// the two is recorded on the raised graph, while it still holds ONNX values:
// where each layer's input and output live in the original graph.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_EXPORT_ONNXEXPORT_H
#define QOPT_EXPORT_ONNXEXPORT_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/StringMap.h"

#include <string>
#include <vector>

namespace mlir {
namespace qopt {

/// A value of the original ONNX graph: a graph input, an initializer
/// (parameter), or output `index` of the node named `name` (nodes without
/// a name are `<op_type>_<position>`, as the importer names them).
struct ONNXValueRef {
  enum Kind { None, GraphInput, Param, NodeOutput } kind = None;
  std::string name;
  unsigned index = 0;
};

/// What the export needs from the raised graph.
struct ONNXExportRecord {
  struct Layer {
    /// The layer's input x.
    ONNXValueRef input;
    /// The node whose output 0 is the layer's output (the raised op's
    /// location).
    std::string rootNode;
    /// Set when two raised layers had this key.
    bool ambiguous = false;
  };
  /// Linear layers by module path (or "@<root node>" without one).
  llvm::StringMap<Layer> layers;
  /// The parameter each operand of a norm, embedding or ONNX node reads
  /// ("" for other operands), by "@<root node>".
  llvm::StringMap<std::vector<std::string>> paramsRead;
  /// Every parameter's value as imported.
  llvm::StringMap<Attribute> params;
};

/// Records `raised` (imported and raised, not yet converted).
ONNXExportRecord recordONNXExport(ModuleOp raised);

struct ONNXExportOptions {
  /// The model qoptc compiled, and where its external data lies.
  std::string modelPath;
  std::string modelDir;
  /// The file to write; weights go to `<outPath>.data` beside it.
  std::string outPath;
  /// Use onnxruntime's com.microsoft MatMulNBits where a layer fits;
  /// otherwise ai.onnx operators only.
  bool contrib = true;
  /// The compiled layers quantize activations to int8 per block
  /// (--int8-activations): MatMulNBits gets accuracy_level 4, which does.
  bool int8Activations = false;
};

/// Writes the model `module` (after its graph passes, parameters still
/// `qopt.param`s) as ONNX. Errors name the layer or op that has no export
/// and leave no file behind.
LogicalResult exportONNX(ModuleOp module, const ONNXExportRecord &record,
                         const ONNXExportOptions &options);

} // namespace qopt
} // namespace mlir

#endif // QOPT_EXPORT_ONNXEXPORT_H
