//===- QOptDialect.td - QOpt dialect definition ------------*- tablegen -*-===//

#ifndef QOPT_DIALECT_QOPT_IR_QOPTDIALECT_TD
#define QOPT_DIALECT_QOPT_IR_QOPTDIALECT_TD

include "mlir/IR/OpBase.td"

def QOpt_Dialect : Dialect {
  let name = "qopt";
  let cppNamespace = "::mlir::qopt";
  let summary = "Quantization, low-rank adapters and outlier handling for "
                "memory-efficient fine-tuning and low-bit inference";
  let description = [{
    The QOpt dialect holds the concepts of qopt that upstream MLIR does not
    have:

    * **quantization formats** (`#qopt.int`, `#qopt.nf4`, `#qopt.float`) and
      **granularities** (`#qopt.per_tensor`, `#qopt.per_channel`,
      `#qopt.per_group`, `#qopt.per_block`, `#qopt.per_token`);
    * **quantized tensors** (`!qopt.qtensor`): packed storage plus scales (plus
      zero points), with the logical shape; scales may themselves be a
      quantized tensor (double quantization);
    * **parameters** (`qopt.param`, `qopt.load_param`): named weights with a
      trainable flag and inline or external data;
    * **adapters** (`qopt.lora` and its variants), **quantizers**
      (`qopt.fake_quant`, `qopt.lsq`), **outlier handling** (`qopt.smooth`,
      `qopt.hadamard`) and the **graph ops** the rewrite passes match on
      (`qopt.linear`, `qopt.rms_norm`, `qopt.layer_norm`).

    ONNX's `QuantizeLinear` / `DequantizeLinear` lower to `arith` directly
    and quantized weights to `!qopt.qtensor`; the upstream `quant` dialect is
    not used (`docs/Rationale.md` says why).
  }];
  // Attributes other ops and function arguments carry, declared once: the
  // passes that set them and the target that reads them use the generated
  // helpers (`QOptDialect::ParamAttrHelper::getNameStr()` …), never a
  // string of their own.
  let discardableAttrs = (ins
    // On an entry argument: the parameter it passes (qopt-params-to-arguments).
    "::mlir::StringAttr":$param,
    // … and where its data is: a file range, or inline values.
    "::mlir::qopt::ExternalDataAttr":$external,
    "::mlir::ElementsAttr":$inline,
    // … whether it is mutable, and which role it has.
    "::mlir::UnitAttr":$trainable,
    "::mlir::UnitAttr":$state,
    // On an entry argument: the run's random key [seed, counter].
    "::mlir::UnitAttr":$rng_key,
    // On an entry argument or result: the model's name for it, and the
    // names of its dynamic dimensions ("" where unnamed).
    "::mlir::StringAttr":$name,
    "::mlir::ArrayAttr":$dim_names,
    // On the module: the run-time adapter slots (qopt-insert-lora
    // slots=true), {module, rank, lora_a, lora_b} each, which the target
    // lists in the manifest.
    "::mlir::ArrayAttr":$lora_slots,
    // On a `cf.assert`: its condition reads tensor data (an index range
    // check), not only shapes: a GPU target checks it on the device
    // (qopt-device-checks).
    "::mlir::UnitAttr":$data_check,
    // On an entry argument: the status word device checks write (0, or
    // the failed check's position in `device_checks` plus one) ...
    "::mlir::UnitAttr":$check_status,
    // ... and on the module, the messages of those checks, which the
    // target lists in the manifest.
    "::mlir::ArrayAttr":$device_checks,
    // On the module: the public functions whose host code touches only
    // host memory (qopt-gpu-host-sync), whose launches the runtime may
    // capture once per input shapes and replay as a CUDA graph.
    "::mlir::ArrayAttr":$cuda_graphs
  );
  let hasRegionArgAttrVerify = 1;
  let hasRegionResultAttrVerify = 1;
  let useDefaultAttributePrinterParser = 1;
  let useDefaultTypePrinterParser = 1;
  let hasConstantMaterializer = 0;
  let extraClassDeclaration = [{
  private:
    void registerAttributes();
    void registerTypes();
  public:
  }];
}

#endif // QOPT_DIALECT_QOPT_IR_QOPTDIALECT_TD
