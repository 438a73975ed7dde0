/*
 * rerun N PROGRAM [ARGS...]: run PROGRAM N times, one after the other, as a shell running `ls` over and
 * over would (Dillon's example of pre-faulting: each run takes the same faults unless the kernel maps the
 * program's pages at exec).  Before each run it sleeps a millisecond, so that the machine idles (and may
 * zero pages meanwhile).  Prints how many runs exited 0; exit status 1 if any did not.
 *
 *   vmgames run --root / --prefault --prezero 256 --stats build/rerun 8 /bin/busybox echo hello
 *   vmgames experiment prefault
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3 || atoi(argv[1]) < 1) {
        fprintf(stderr, "usage: rerun N PROGRAM [ARGS...]  (N >= 1)\n");
        return 2;
    }
    int runs = atoi(argv[1]), good = 0;
    struct timespec a_millisecond = {0, 1000000};
    for (int i = 0; i < runs; i++) {
        nanosleep(&a_millisecond, NULL);
        fflush(stdout);
        pid_t child = fork();
        if (child < 0) {
            perror("rerun: fork");
            return 1;
        }
        if (child == 0) {
            execv(argv[2], argv + 2);
            perror("rerun: exec");
            _exit(127);
        }
        int status;
        if (waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0)
            good++;
    }
    printf("rerun: %d of %d runs of %s exited 0\n", good, runs, argv[2]);
    return good == runs ? 0 : 1;
}
