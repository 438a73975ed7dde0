/* What the instructions that read the CPU's state give: rdtsc, rdtscp, cpuid, rdrand, rdseed.
 *
 * On vmgames none of them reads the host, so two runs print the same bytes
 * (and a different --seed gives other random values).  Prints:
 *   rdtsc T1                         two readings, then rdtscp's and its TSC_AUX
 *   rdtsc T2
 *   rdtscp T3 aux A
 *   tsc across 1000 loops: D         rdtsc ... rdtsc around a 1000-turn loop: on vmgames,
 *                                    the instructions in between, 3 + 2 * 1000, and the second rdtsc
 *   cpuid 0: max leaf M, GenuineIntel
 *   rdrand64 V cf 1, rdrand32 V cf 1, rdrand16 V cf 1, rdseed64 V cf 1, rdseed16 V cf 1
 *
 * With the argument "semantics" it prints instead only what any x86-64 CPU
 * that advertises RDRAND and RDSEED does, so the output is the same on the
 * host: whether CPUID advertises them and rdtscp, whether each succeeded
 * (CF), whether a 32-bit destination cleared the upper half of its
 * register and a 16-bit one kept the upper 48 bits, and whether the TSC
 * went forwards.  Exit status 0. */
#include "runtime.h"

static unsigned long rdtsc(void)
{
    unsigned int low, high;
    __asm__ volatile("rdtsc" : "=a"(low), "=d"(high));
    return (unsigned long)high << 32 | low;
}

static unsigned long rdtscp(unsigned int *aux)
{
    unsigned int low, high;
    __asm__ volatile("rdtscp" : "=a"(low), "=d"(high), "=c"(*aux));
    return (unsigned long)high << 32 | low;
}

/* Both readings in one asm statement, so that exactly 3 + 2 * turns instructions lie between them. */
static unsigned long tsc_across_loop(unsigned int turns)
{
    unsigned int low1, high1, low2, high2;
    __asm__ volatile("rdtsc\n"
                     "    mov esi, eax\n"
                     "    mov edi, edx\n"
                     "    mov ecx, %4\n"
                     "1:  dec ecx\n"
                     "    jnz 1b\n"
                     "    rdtsc\n"
                     : "=&S"(low1), "=&D"(high1), "=&a"(low2), "=&d"(high2)
                     : "r"(turns)
                     : "rcx", "cc");
    return ((unsigned long)high2 << 32 | low2) - ((unsigned long)high1 << 32 | low1);
}

static void cpuid(unsigned int leaf, unsigned int regs[4])
{
    __asm__ volatile("cpuid" : "=a"(regs[0]), "=b"(regs[1]), "=c"(regs[2]), "=d"(regs[3]) : "a"(leaf), "c"(0));
}

/* Each returns the whole 64-bit register the instruction wrote, which held all ones before, and its CF. */
#define RANDOM_INTO(name, instruction, destination)                                          \
    static unsigned long name(int *carry)                                                    \
    {                                                                                        \
        unsigned long value;                                                                 \
        unsigned char cf;                                                                    \
        __asm__ volatile("mov rax, -1\n    " instruction " " destination "\n    setc %1"     \
                         : "=a"(value), "=q"(cf) : : "cc");                                  \
        *carry = cf;                                                                         \
        return value;                                                                        \
    }
RANDOM_INTO(rdrand64, "rdrand", "rax")
RANDOM_INTO(rdrand32, "rdrand", "eax")
RANDOM_INTO(rdrand16, "rdrand", "ax")
RANDOM_INTO(rdseed64, "rdseed", "rax")
RANDOM_INTO(rdseed16, "rdseed", "ax")

static void put_hex(unsigned long n)
{
    char digits[17];
    for (int i = 15; i >= 0; i--, n >>= 4)
        digits[i] = "0123456789abcdef"[n & 15];
    digits[16] = 0;
    put("0x");
    put(digits);
}

static void put_random(const char *name, unsigned long value, int carry)
{
    put(name);
    put(" ");
    put_hex(value);
    put(" cf ");
    put_number(carry);
    end_line();
}

static void put_yes_no(const char *what, int yes)
{
    put(what);
    put(yes ? ": yes" : ": no");
    end_line();
}

static int values(void)
{
    unsigned int aux, regs[4];
    int carry;
    unsigned long first = rdtsc(), second = rdtsc(), third = rdtscp(&aux);

    put("rdtsc ");
    put_number(first);
    end_line();
    put("rdtsc ");
    put_number(second);
    end_line();
    put("rdtscp ");
    put_number(third);
    put(" aux ");
    put_number(aux);
    end_line();
    put("tsc across 1000 loops: ");
    put_number(tsc_across_loop(1000));
    end_line();

    cpuid(0, regs);
    char vendor[13];
    for (int i = 0; i < 4; i++) {
        vendor[i] = (char)(regs[1] >> 8 * i);
        vendor[4 + i] = (char)(regs[3] >> 8 * i);
        vendor[8 + i] = (char)(regs[2] >> 8 * i);
    }
    vendor[12] = 0;
    put("cpuid 0: max leaf ");
    put_number(regs[0]);
    put(", ");
    put(vendor);
    end_line();

    unsigned long value = rdrand64(&carry);
    put_random("rdrand64", value, carry);
    value = rdrand32(&carry);
    put_random("rdrand32", value, carry);
    value = rdrand16(&carry);
    put_random("rdrand16", value, carry);
    value = rdseed64(&carry);
    put_random("rdseed64", value, carry);
    value = rdseed16(&carry);
    put_random("rdseed16", value, carry);
    return 0;
}

/* Hardware may run out of entropy for a moment (CF clear); Intel advises retrying. */
#define RETRY(call) ({ unsigned long v_; int tries_ = 0; do v_ = call; while (!carry && ++tries_ < 100); v_; })

static int semantics(void)
{
    unsigned int aux, regs[4];
    int carry;

    cpuid(1, regs);
    put_yes_no("cpuid advertises rdrand", regs[2] >> 30 & 1);
    cpuid(7, regs);
    put_yes_no("cpuid advertises rdseed", regs[1] >> 18 & 1);
    cpuid(0x80000001, regs);
    put_yes_no("cpuid advertises rdtscp", regs[3] >> 27 & 1);

    unsigned long first = rdtsc(), second = rdtscp(&aux), third = rdtsc();
    put_yes_no("the tsc went forwards", first < second && second < third);

    unsigned long value = RETRY(rdrand64(&carry));
    put_yes_no("rdrand64 succeeded", carry);
    value = RETRY(rdrand32(&carry));
    put_yes_no("rdrand32 succeeded", carry);
    put_yes_no("rdrand32 cleared the upper half", value >> 32 == 0);
    value = RETRY(rdrand16(&carry));
    put_yes_no("rdrand16 succeeded", carry);
    put_yes_no("rdrand16 kept the upper 48 bits", value >> 16 == 0xffffffffffffUL);
    value = RETRY(rdseed64(&carry));
    put_yes_no("rdseed64 succeeded", carry);
    value = RETRY(rdseed16(&carry));
    put_yes_no("rdseed16 kept the upper 48 bits", carry && value >> 16 == 0xffffffffffffUL);
    return 0;
}

int main(int argc, char **argv, char **envp)
{
    (void)envp;
    if (argc > 1 && strings_equal(argv[1], "semantics"))
        return semantics();
    return values();
}
