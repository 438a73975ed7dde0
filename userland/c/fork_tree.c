/* A binary fork tree, three levels below the root: fifteen processes.
 *
 * Each process prints its name on arrival ("root", "root.0", "root.0.1", ...),
 * forks its two children one at a time and waits for each before forking the
 * next, so the output is in the same (pre-order) order on every kernel.  A
 * process exits with the size of its subtree, which its parent reads back
 * from wait4; the root's status is 15. */
#include "runtime.h"

#define LEVELS 3

static int grow(char *name, int length, int level)
{
    put(name);
    put(": level ");
    put_number(level);
    end_line();
    int processes = 1;
    for (int branch = 0; level < LEVELS && branch < 2; branch++) {
        long my_pid = getpid();
        long child = fork();
        if (child < 0) {
            put(name);
            put(": fork failed");
            end_line();
            return processes;
        }
        if (child == 0) {
            name[length] = '.';
            name[length + 1] = (char)('0' + branch);
            name[length + 2] = 0;
            if (getppid() != my_pid) {
                put(name);
                put(": getppid is not the pid of the process that forked me");
                end_line();
            }
            exit(grow(name, length + 2, level + 1));
        }
        int status = 0;
        long waited = wait4(child, &status, 0, 0);
        put(name);
        put(": child ");
        put_number(branch);
        put(waited == child ? " (the pid fork returned) " : " (some other pid) ");
        put_wait_status(status);
        end_line();
        processes += WEXITSTATUS(status);
    }
    return processes;
}

int main(int argc, char **argv, char **envp)
{
    char name[4 + 2 * LEVELS + 1] = "root";
    int processes = grow(name, 4, 0);
    /* Every child has been reaped: there is nothing left to wait for. */
    long no_child = wait4(-1, 0, 0, 0);
    put("root: ");
    put_number(processes);
    put(" processes; wait4 with no children left returns ");
    put_number(no_child);
    end_line();
    return processes;
}
