//===- Passes.td - ONNX front-end passes -----------------*- tablegen -*-===//

#ifndef QOPT_CONVERSION_ONNXTOQOPT_PASSES_TD
#define QOPT_CONVERSION_ONNXTOQOPT_PASSES_TD

include "mlir/Pass/PassBase.td"

def QOptRaiseONNXPass : Pass<"qopt-raise-onnx", "::mlir::ModuleOp"> {
  let summary = "Recognises decomposed layers in imported ONNX graphs";
  let description = [{
    Exporters write layers as chains of primitive nodes. This pass finds
    them among the `onnx.node` ops and replaces them with the QOpt graph
    ops that the adapter, quantization and rotation passes match on:

    * **linear layers**: `MatMul(x, W)` with a 2-D weight parameter
      (`K×N`, as torch.onnx stores `nn.Linear` weights transposed), plus an
      `Add` of a 1-D bias parameter when it follows, and `Gemm(x, W, b)` with
      `transB = 1`, `alpha = beta = 1` → `qopt.linear` (with a
      `linalg.transpose` of `W` in the first case);
    * **embeddings**: `Gather(W, ids, axis = 0)` of a 2-D float parameter
      → `qopt.embedding` (module path from the table's name);
    * **attention**: torch's decomposed `scaled_dot_product_attention`,
      `MatMul(Mul(Q, a), Mul(Kᵀ, b))` [→ `Add(mask)`] → `Softmax` →
      `Where(IsNaN(P), 0, P)` → `MatMul(·, V)` → `qopt.attention` with
      scale `a·b` (without the NaN guard a fully masked row would differ, so
      it is not raised);
    * **RMSNorm**: `Pow(x, 2)` (or `Mul(x, x)`) → `ReduceMean` over the last
      axis with `keepdims` → `Add(ε)` → `Sqrt` → `Div(x, ·)` (or `Mul` by
      `Reciprocal`/`Div(1, ·)`) → `Mul(γ)` → `qopt.rms_norm`;
    * **rotary embeddings**: Hugging Face's `apply_rotary_pos_emb`,
      `Add(Mul(x, cos), Mul(Concat(Neg(x[..., D/2:]), x[..., :D/2]), sin))`
      with the slices' bounds constant (or read off their result types) →
      `qopt.rotary` (`cos`/`sin` dimensions that may be 1 where `x`'s is
      not are broadcast as the run says);
    * **residual connections**: `Add(stream, linear(...))` where the stream
      is an embedding, a norm's input or output or another residual add →
      `qopt.residual_add` with the linear layer's module path.

    Nodes are only replaced when every intermediate value has no other use,
    so the rewrite never duplicates work or changes other outputs.
  }];
  let dependentDialects = ["::mlir::linalg::LinalgDialect",
                           "::mlir::tensor::TensorDialect",
                           "::mlir::qopt::QOptDialect"];
}

def ConvertONNXToQOptPass : Pass<"convert-onnx-to-qopt", "::mlir::ModuleOp"> {
  let summary = "Converts imported ONNX nodes into the graph dialects";
  let description = [{
    Rewrites every `onnx.node` that `qopt-translate --import-onnx`
    produced into `linalg`, `tensor`, `arith` and `math` ops on tensors (and
    QOpt ops where they fit), following the ONNX operator specification of
    the node's opset. Handlers are kept in a table keyed by (domain, op type,
    since-version), as the ONNX changelog versions operators.

    Broadcasting follows numpy/ONNX rules. Where the types cannot decide
    whether a dimension broadcasts (a dynamic size that may be 1 at run
    time), the run decides: the operand is expanded when its size is 1 and
    the result's is not, and sizes that are neither equal nor 1 stop the run
    with an error naming the node (`cf.assert`, see
    `qopt-lower-runtime-checks`). Indexed reads and writes check their
    indices the same way; negative indices count from the end where ONNX
    says so.
    Values that shape computations need as constants (Reshape's shape,
    reduction axes, …) are read from constants and inline parameters;
    otherwise they are computed at run time where the operator allows.

    Operations that later passes must recognise keep a name (the mid-level
    op set, lowered to loops late, per target, by `convert-qopt-to-linalg`):
    products (`MatMul`, `Gemm`) become `linalg.matmul`, `linalg.batch_matmul`
    or, transposed, batched or broadcast, `linalg.contract` (integer
    products stay `linalg.generic`); `Softmax` becomes `linalg.softmax`.

    As the walk reaches them, decomposed layers are raised to QOpt ops
    first (the patterns of `qopt-raise-onnx`: linear layers to
    `qopt.linear`, embeddings to `qopt.embedding`, attention to
    `qopt.attention`, RMSNorm chains to `qopt.rms_norm`, …), so that they are
    found even where the model's declared types are unranked: by then their
    inputs carry the types conversion refined.

    A node no handler supports, or one whose attributes or inputs the
    handler cannot honour, is an error naming the node, op type, domain and
    opset — unless `allow-unsupported` is set, which leaves it in place.
  }];
  let options = [
    Option<"allowUnsupported", "allow-unsupported", "bool", "false",
           "Leave nodes that cannot be converted as onnx.node instead "
           "of failing">
  ];
  let dependentDialects = [
    "::mlir::arith::ArithDialect", "::mlir::linalg::LinalgDialect",
    "::mlir::math::MathDialect", "::mlir::tensor::TensorDialect",
    "::mlir::cf::ControlFlowDialect", "::mlir::scf::SCFDialect",
    "::mlir::qopt::QOptDialect"
  ];
}

#endif // QOPT_CONVERSION_ONNXTOQOPT_PASSES_TD
