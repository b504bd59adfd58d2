// The demo model's files, embedded with .incbin (CMake passes each path as a string macro).
// Each file gets <name>_begin / <name>_end symbols, read by demo.cpp.

#if defined(__APPLE__)
#define SYM(x) _##x
#define RODATA .section __DATA,__const
#else
#define SYM(x) x
#define RODATA .section .rodata
#endif

#define EMBED(name, file)              \
  .balign 64;                          \
  .globl SYM(name##_begin);            \
  SYM(name##_begin):                   \
  .incbin file;                        \
  .globl SYM(name##_end);              \
  SYM(name##_end):

RODATA
EMBED(pensieve_demo_config, PENSIEVE_DEMO_CONFIG)
EMBED(pensieve_demo_weights, PENSIEVE_DEMO_WEIGHTS)
EMBED(pensieve_demo_tokenizer, PENSIEVE_DEMO_TOKENIZER)

#if defined(__linux__) && defined(__ELF__)
.section .note.GNU-stack,"",%progbits
#endif
