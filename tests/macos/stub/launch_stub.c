/* A stand-in for libSystem's launch_activate_socket(3), for tests on Linux.
 *
 * Built by tests/macos/test_launch_activate.py into a shared object, which
 * bridge.platform.macos.launch_activate_socket loads in place of libSystem:
 *   "http"     two listening TCP sockets on 127.0.0.1, ports chosen by the kernel
 *   "control"  one AF_UNIX stream socket: one end of a socketpair, or, with
 *              LAUNCH_STUB_CONTROL_PATH set, a socket listening at that path, mode
 *              0600, as launchd makes it for SockPathName and SockPathMode
 *   any other  ENOENT, as launchd answers for a name its plist lacks
 * With LAUNCH_STUB_NOT_MANAGED set, every name answers ESRCH (not started by launchd).
 *
 * It also exports its own free(), which counts the arrays it handed out and that
 * came back, so the tests see that the caller released the array (and only it).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static void *handed_out;
static int released;

int launch_stub_released(void) { return released; }

void free(void *pointer) {
    static void (*real_free)(void *);
    if (real_free == NULL) {
        real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    }
    if (pointer != NULL && pointer == handed_out) {
        released++;
        handed_out = NULL;
    }
    real_free(pointer);
}

static int listening_tcp(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(fd, 16) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int listening_unix(const char *path) {
    struct sockaddr_un address = {0};
    if (strlen(path) >= sizeof address.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) {
        return -1;
    }
    address.sun_family = AF_UNIX;
    strcpy(address.sun_path, path);
    unlink(path);
    mode_t old = umask(0177);
    int bound = bind(fd, (struct sockaddr *)&address, sizeof address);
    umask(old);
    if (bound != 0 || listen(fd, 16) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int launch_activate_socket(const char *name, int **fds, size_t *cnt) {
    if (getenv("LAUNCH_STUB_NOT_MANAGED") != NULL) {
        return ESRCH;
    }
    int *array = NULL;
    size_t count = 0;
    if (strcmp(name, "http") == 0) {
        count = 2;
        array = malloc(count * sizeof *array);
        if (array == NULL) {
            return ENOMEM;
        }
        array[0] = listening_tcp();
        array[1] = listening_tcp();
        if (array[0] < 0 || array[1] < 0) {
            return errno;
        }
    } else if (strcmp(name, "control") == 0) {
        int fd;
        const char *path = getenv("LAUNCH_STUB_CONTROL_PATH");
        if (path != NULL) {
            fd = listening_unix(path);
            if (fd < 0) {
                return errno;
            }
        } else {
            int pair[2];
            if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) {
                return errno;
            }
            close(pair[1]);
            fd = pair[0];
        }
        count = 1;
        array = malloc(count * sizeof *array);
        if (array == NULL) {
            return ENOMEM;
        }
        array[0] = fd;
    } else {
        return ENOENT;
    }
    handed_out = array;
    *fds = array;
    *cnt = count;
    return 0;
}
