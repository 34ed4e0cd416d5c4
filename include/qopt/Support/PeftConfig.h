//===- PeftConfig.h - Facts about PEFT's adapter_config.json ----*- C++ -*-===//
//
// What both readers of PEFT adapter configs (the compiler's
// qopt-load-adapter and the runtime's adapter slots) agree on. Plain C++:
// the runtime links no LLVM.
//
//===----------------------------------------------------------------------===//

#ifndef QOPT_SUPPORT_PEFTCONFIG_H
#define QOPT_SUPPORT_PEFTCONFIG_H

#include <cstring>

namespace qopt::peft {

/// LoraConfig keys that only describe the adapter, or whose value does not
/// change what the adapted layers compute (any other key must be unset, or
/// be one a reader handles).
inline constexpr const char *kInformationalKeys[] = {
    "base_model_name_or_path", "revision",          "task_type",
    "inference_mode",          "peft_version",      "auto_mapping",
    "megatron_core",           "qalora_group_size", "fan_in_fan_out"};

inline bool isInformationalKey(const char *key) {
  for (const char *k : kInformationalKeys)
    if (std::strcmp(k, key) == 0)
      return true;
  return false;
}

/// init_lora_weights values (as strings; PEFT writes true / false as JSON
/// booleans) whose saved factors apply to the unchanged base weights: only
/// the starting factors depended on them. Others (PiSSA, OLoRA, LoftQ, ...)
/// left a rewritten base weight behind.
inline bool initKeepsBaseWeights(const char *init) {
  for (const char *i : {"true", "false", "gaussian", "eva", "randlora"})
    if (std::strcmp(i, init) == 0)
      return true;
  return false;
}
} // namespace qopt::peft

#endif // QOPT_SUPPORT_PEFTCONFIG_H
