/* Who the process is and what it may use: the ids, umask, resource limits
 * (inherited by a child), getrandom, sysinfo, sched_getaffinity, and the
 * wall clock of time, gettimeofday and clock_gettime.  What depends on the
 * host (its limits, its groups, its random bytes, its memory and uptime)
 * is printed on "@" lines. */
#include "libc_probe.h"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>

static const char *resources[] = {"CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK",
                                  "AS", "LOCKS", "SIGPENDING", "MSGQUEUE", "NICE", "RTPRIO", "RTTIME"};

static void print_limit(const char *prefix, unsigned long value)
{
    if (value == RLIM_INFINITY)
        printf("%sunlimited", prefix);
    else
        printf("%s%lu", prefix, value);
}

int main(int argc, char **argv)
{
    probe_start();
    if (argc > 1) {
        /* The child a fork and exec made: the limits and umask it inherited. */
        struct rlimit limit;
        getrlimit(RLIMIT_NOFILE, &limit);
        mode_t mask = umask(0);
        printf("exec'd child: RLIMIT_NOFILE %lu %lu, umask %03o\n", (unsigned long)limit.rlim_cur,
               (unsigned long)limit.rlim_max, mask);
        return 0;
    }

    /* Identity: vmgames is run with the host's uid and gid, so these are the host's. */
    printf("uid %ld euid %ld gid %ld egid %ld\n", RAW0(SYS_getuid), RAW0(SYS_geteuid), RAW0(SYS_getgid),
           RAW0(SYS_getegid));
    unsigned ruid = 7, euid = 7, suid = 7, rgid = 7, egid = 7, sgid = 7;
    show("getresuid", RAW3(SYS_getresuid, &ruid, &euid, &suid));
    show("getresgid", RAW3(SYS_getresgid, &rgid, &egid, &sgid));
    printf("  all the same as getuid and getgid: %s\n",
           yes(ruid == getuid() && euid == ruid && suid == ruid && rgid == getgid() && egid == rgid && sgid == rgid));
    show("getresuid(bad pointer)", RAW3(SYS_getresuid, &ruid, BAD_POINTER, &suid));
    show("getgroups(-1)", RAW2(SYS_getgroups, -1, NULL));
    printf("@ getgroups(0): %ld\n", RAW2(SYS_getgroups, 0, NULL));

    /* umask: the old one back, only the permission bits kept. */
    printf("@ umask at the start: %03lo\n", RAW1(SYS_umask, 027));
    printf("umask(0): %03lo\n", RAW1(SYS_umask, 0));
    printf("umask(0xfffff): %03lo\n", RAW1(SYS_umask, 0xfffff));
    printf("umask(022): %03lo\n", RAW1(SYS_umask, 022));

    /* Resource limits: what a fresh process has is the host's on the host, Linux's defaults on vmgames. */
    for (int resource = 0; resource < 16; resource++) {
        struct rlimit limit;
        RAW2(SYS_getrlimit, resource, &limit);
        printf("@ RLIMIT_%s", resources[resource]);
        print_limit(" ", limit.rlim_cur);
        print_limit(" ", limit.rlim_max);
        printf("\n");
    }
    struct rlimit limit, old;
    show("getrlimit(16)", RAW2(SYS_getrlimit, 16, &limit));
    show("getrlimit(-1)", RAW2(SYS_getrlimit, -1, &limit));
    show("getrlimit(NOFILE, bad pointer)", RAW2(SYS_getrlimit, RLIMIT_NOFILE, BAD_POINTER));
    show("setrlimit(NOFILE, bad pointer)", RAW2(SYS_setrlimit, RLIMIT_NOFILE, BAD_POINTER));
    limit.rlim_cur = 200, limit.rlim_max = 100;
    show("setrlimit(NOFILE, 200 > 100)", RAW2(SYS_setrlimit, RLIMIT_NOFILE, &limit));
    limit.rlim_cur = 100, limit.rlim_max = 2000;
    show("setrlimit(NOFILE, 100 2000)", RAW2(SYS_setrlimit, RLIMIT_NOFILE, &limit));
    show("getrlimit(NOFILE)", RAW2(SYS_getrlimit, RLIMIT_NOFILE, &limit));
    printf("  %lu %lu\n", (unsigned long)limit.rlim_cur, (unsigned long)limit.rlim_max);
    limit.rlim_cur = 100, limit.rlim_max = (1UL << 20) + 1;
    show("setrlimit(NOFILE, past fs.nr_open)", RAW2(SYS_setrlimit, RLIMIT_NOFILE, &limit));
    limit.rlim_cur = 100, limit.rlim_max = 2000;
    show("setrlimit(99, ...)", RAW2(SYS_setrlimit, 99, &limit));
    limit.rlim_cur = 64, limit.rlim_max = 1000;
    show("prlimit64(0, NOFILE, 64 1000, &old)", RAW4(SYS_prlimit64, 0, RLIMIT_NOFILE, &limit, &old));
    printf("  old %lu %lu\n", (unsigned long)old.rlim_cur, (unsigned long)old.rlim_max);
    show("prlimit64(getpid(), NOFILE, NULL, &old)", RAW4(SYS_prlimit64, getpid(), RLIMIT_NOFILE, NULL, &old));
    printf("  old %lu %lu\n", (unsigned long)old.rlim_cur, (unsigned long)old.rlim_max);
    show("prlimit64(0, 99, NULL, &old)", RAW4(SYS_prlimit64, 0, 99, NULL, &old));
    show("prlimit64(0x7ffffff0, NOFILE, NULL, &old)", RAW4(SYS_prlimit64, 0x7ffffff0, RLIMIT_NOFILE, NULL, &old));
    show("prlimit64(0x7ffffff0, 99, bad new, &old)", RAW4(SYS_prlimit64, 0x7ffffff0, 99, BAD_POINTER, &old));
    limit.rlim_cur = 50, limit.rlim_max = 1000;
    show("prlimit64(0, NOFILE, 50 1000, bad old)", RAW4(SYS_prlimit64, 0, RLIMIT_NOFILE, &limit, BAD_POINTER));
    RAW2(SYS_getrlimit, RLIMIT_NOFILE, &limit);
    printf("  the new limit was set all the same: %s\n", yes(limit.rlim_cur == 50));
    RAW1(SYS_umask, 0077);
    pid_t child = probe_fork();
    if (child == 0) {
        char *arguments[] = {argv[0], "child", NULL};
        execve(argv[0], arguments, NULL);
        _exit(127);
    }
    int status;
    waitpid(child, &status, 0);
    show("the child's exit status", WEXITSTATUS(status));

    /* getrandom: the bytes differ from run to run on the host, and follow --seed on vmgames. */
    unsigned char bytes[16];
    show("getrandom(16, 0)", RAW3(SYS_getrandom, bytes, 16, 0));
    printf("@ bytes:");
    for (int i = 0; i < 16; i++)
        printf(" %02x", bytes[i]);
    printf("\n");
    show("getrandom(16, GRND_NONBLOCK | GRND_RANDOM)", RAW3(SYS_getrandom, bytes, 16, 3));
    show("getrandom(16, GRND_INSECURE)", RAW3(SYS_getrandom, bytes, 16, 4));
    show("getrandom(16, GRND_INSECURE | GRND_RANDOM)", RAW3(SYS_getrandom, bytes, 16, 6));
    show("getrandom(16, 8)", RAW3(SYS_getrandom, bytes, 16, 8));
    show("getrandom(0, 0)", RAW3(SYS_getrandom, bytes, 0, 0));
    show("getrandom(bad pointer)", RAW3(SYS_getrandom, BAD_POINTER, 16, 0));
    show("getrandom(read-only memory)", RAW3(SYS_getrandom, main, 16, 0));
    static unsigned char big[70000];
    show("getrandom(70000)", RAW3(SYS_getrandom, big, sizeof big, 0));

    /* sysinfo and the CPUs. */
    struct sysinfo info;
    show("sysinfo", RAW1(SYS_sysinfo, &info));
    printf("  mem_unit %u, free <= total: %s, procs >= 1: %s, no high memory: %s\n", info.mem_unit,
           yes(info.freeram <= info.totalram), yes(info.procs >= 1), yes(info.totalhigh == 0 && info.freehigh == 0));
    printf("@ sysinfo: uptime %ld, totalram %lu, procs %u, loads %lu %lu %lu, swap %lu\n", info.uptime,
           info.totalram, info.procs, info.loads[0], info.loads[1], info.loads[2], info.totalswap);
    show("sysinfo(bad pointer)", RAW1(SYS_sysinfo, BAD_POINTER));
    unsigned long mask[16] = {0};
    show("sched_getaffinity(0, 8)", RAW3(SYS_sched_getaffinity, 0, 8, mask));
    printf("@ CPUs: %#lx\n", mask[0]);
    printf("@ sched_getaffinity(0, 128): %ld (the size of the kernel's cpumask)\n",
           RAW3(SYS_sched_getaffinity, 0, 128, mask));
    show("sched_getaffinity(getpid(), 8)", RAW3(SYS_sched_getaffinity, getpid(), 8, mask));
    show("sched_getaffinity(0, 4)", RAW3(SYS_sched_getaffinity, 0, 4, mask));
    show("sched_getaffinity(0, 12)", RAW3(SYS_sched_getaffinity, 0, 12, mask));
    show("sched_getaffinity(0, 0)", RAW3(SYS_sched_getaffinity, 0, 0, mask));
    show("sched_getaffinity(0x7ffffff0, 8)", RAW3(SYS_sched_getaffinity, 0x7ffffff0, 8, mask));
    show("sched_getaffinity(0, 8, bad pointer)", RAW3(SYS_sched_getaffinity, 0, 8, BAD_POINTER));

    /* The wall clock: time, gettimeofday and clock_gettime agree. */
    struct timespec now;
    struct timeval tv;
    struct {
        int minuteswest, dsttime;
    } zone = {7, 7};
    clock_gettime(CLOCK_REALTIME, &now);
    long seconds = RAW1(SYS_time, NULL);
    long stored = 0;
    long returned = RAW1(SYS_time, &stored);
    show("gettimeofday", RAW2(SYS_gettimeofday, &tv, &zone));
    /* Linux's time() reads the coarse clock, which may be a tick behind clock_gettime across a second. */
    printf("  time() agrees with clock_gettime: %s, time(&t) stores what it returns: %s\n",
           yes(seconds - now.tv_sec <= 1 && seconds >= now.tv_sec - 1), yes(stored == returned));
    printf("  gettimeofday agrees: %s, tv_usec below a million: %s\n",
           yes(tv.tv_sec - now.tv_sec <= 1 && tv.tv_sec >= now.tv_sec), yes(tv.tv_usec >= 0 && tv.tv_usec < 1000000));
    printf("@ timezone: %d %d\n", zone.minuteswest, zone.dsttime);
    show("gettimeofday(NULL, NULL)", RAW2(SYS_gettimeofday, NULL, NULL));
    show("gettimeofday(bad pointer)", RAW2(SYS_gettimeofday, BAD_POINTER, NULL));
    show("gettimeofday(tv, bad pointer)", RAW2(SYS_gettimeofday, &tv, BAD_POINTER));
    show("time(bad pointer)", RAW1(SYS_time, BAD_POINTER));
    printf("@ time: %ld\n", seconds);
    return 0;
}
