#ifndef DELTAPLAN_CLIBFUZZER_H
#define DELTAPLAN_CLIBFUZZER_H

#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver (compiler-rt, FuzzerDriver.cpp), linked by `-sanitize=fuzzer`: parses the
/// libFuzzer flags in `argv` and fuzzes `callback`. The harnesses call it from their own `main`,
/// because SwiftPM points an executable's `main` at the module's entry point
/// (`--defsym main=<module>_main`), which hides the `main` libFuzzer would otherwise supply.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
