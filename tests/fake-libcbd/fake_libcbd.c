/*
 * A fake libcbd: Curve's C client API (include/client/libcbd.h and libcurve_define.h in
 * Curve's sources), backed by local files, for tests. It is compiled at test time
 * (cc -shared -fPIC -pthread) and loaded by the gateway exactly as the real library is, so
 * the dlopen, the AIO context layout and the callback path all run in CI.
 *
 * It keeps the quirks of the real library that an adapter must survive:
 *  - callbacks run on the library's own threads, in an order of its choosing (random delays
 *    on several worker threads reorder completions);
 *  - zero-length I/O returns 0 and never calls back;
 *  - misaligned I/O (offset or length not a multiple of 512) calls back on the caller's
 *    thread AND returns an error;
 *  - small discards (up to 4 KiB) call back on the caller's thread before returning;
 *  - close waits for the volume's I/O in flight;
 *  - there is no cancel.
 *
 * Its configuration is the client conf file given to cbd_libcurve_init, `key=value` lines:
 *   fake.dir=PATH        directory of the volume files (the name after `//` in the spec)
 *   fake.delay_us=N      random 0..N microseconds before each completion (default 200)
 *   fake.error_at=BYTE   reads and writes covering BYTE complete with -DISK_FAIL
 *   fake.refuse_at=BYTE  reads and writes covering BYTE return -FAILED with no callback
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* libcurve_define.h */
enum { ERR_FAILED = 2, ERR_NOTEXIST = 6, ERR_PARAM = 16, ERR_DISK_FAIL = 20,
       ERR_NOT_ALIGNED = 22, ERR_BAD_FD = 23 };
typedef enum LIBCURVE_OP { LIBCURVE_OP_READ, LIBCURVE_OP_WRITE, LIBCURVE_OP_DISCARD,
                           LIBCURVE_OP_MAX } LIBCURVE_OP;
struct CurveAioContext;
typedef void (*LibCurveAioCallBack)(struct CurveAioContext *context);
typedef struct CurveAioContext {
    off_t offset;
    size_t length;
    int ret;
    LIBCURVE_OP op;
    LibCurveAioCallBack cb;
    void *buf;
} CurveAioContext;

/* libcbd.h */
typedef struct CurveOptions {
    bool inited;
    char *conf;
} CurveOptions;

#define VOLUMES_MAX 64
#define WORKERS 4
#define ALIGN 512
#define SMALL_DISCARD_BYTES 4096

struct job {
    struct job *next;
    CurveAioContext *ctx;
    int vol;
};

struct volume {
    int os_fd;          /* -1: slot free */
    int in_flight;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t idle = PTHREAD_COND_INITIALIZER;
static struct job *head, *tail;
static struct volume volumes[VOLUMES_MAX];
static bool inited;
static char dir[1200];
static long delay_us = 200;
static long long error_at = -1, refuse_at = -1;

static bool covers(long long at, const CurveAioContext *c) {
    return at >= 0 && at >= (long long)c->offset && at < (long long)(c->offset + c->length);
}

static void do_io(int os_fd, CurveAioContext *c) {
    if (c->op != LIBCURVE_OP_DISCARD && covers(error_at, c)) {
        c->ret = -ERR_DISK_FAIL;
        return;
    }
    size_t done = 0;
    while (done < c->length) {
        ssize_t n;
        char *p = (char *)c->buf + done;
        if (c->op == LIBCURVE_OP_READ) {
            n = pread(os_fd, p, c->length - done, c->offset + done);
        } else if (c->op == LIBCURVE_OP_WRITE) {
            n = pwrite(os_fd, p, c->length - done, c->offset + done);
        } else {
            n = fallocate(os_fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                          c->offset, c->length) == 0 ? (ssize_t)c->length : -1;
        }
        if (n <= 0) {
            c->ret = -ERR_FAILED;
            return;
        }
        done += (size_t)n;
    }
    c->ret = c->op == LIBCURVE_OP_DISCARD ? 0 : (int)c->length;
}

static void *worker(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + (unsigned)getpid();
    for (;;) {
        pthread_mutex_lock(&lock);
        while (!head)
            pthread_cond_wait(&work, &lock);
        struct job *j = head;
        head = j->next;
        if (!head)
            tail = NULL;
        int os_fd = volumes[j->vol].os_fd;
        pthread_mutex_unlock(&lock);
        if (delay_us > 0)
            usleep((useconds_t)(rand_r(&seed) % (delay_us + 1)));
        do_io(os_fd, j->ctx);
        j->ctx->cb(j->ctx);
        pthread_mutex_lock(&lock);
        if (--volumes[j->vol].in_flight == 0)
            pthread_cond_broadcast(&idle);
        pthread_mutex_unlock(&lock);
        free(j);
    }
    return NULL;
}

int cbd_libcurve_init(const CurveOptions *options) {
    if (inited)
        return 0;
    FILE *f = options && options->conf ? fopen(options->conf, "r") : NULL;
    if (!f)
        return -ERR_FAILED;
    char line[1200];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!strncmp(line, "fake.dir=", 9))
            snprintf(dir, sizeof dir, "%s", line + 9);
        else if (!strncmp(line, "fake.delay_us=", 14))
            delay_us = atol(line + 14);
        else if (!strncmp(line, "fake.error_at=", 14))
            error_at = atoll(line + 14);
        else if (!strncmp(line, "fake.refuse_at=", 15))
            refuse_at = atoll(line + 15);
    }
    fclose(f);
    if (!dir[0])
        return -ERR_PARAM;
    for (int i = 0; i < VOLUMES_MAX; i++)
        volumes[i].os_fd = -1;
    for (long i = 0; i < WORKERS; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)i) != 0)
            return -ERR_FAILED;
        pthread_detach(t);
    }
    inited = true;
    return 0;
}

int cbd_libcurve_fini(void) { return 0; }

/* "cbd:pool//vol_owner_" -> "<dir>/vol_owner_" */
static int volume_path(const char *filename, char *out, size_t n) {
    const char *name = strstr(filename, "//");
    if (!name || !name[2])
        return -1;
    snprintf(out, n, "%s/%s", dir, name + 2);
    return 0;
}

int64_t cbd_libcurve_filesize(const char *filename) {
    char path[2200];
    struct stat st;
    if (!inited || volume_path(filename, path, sizeof path) || stat(path, &st))
        return -ERR_NOTEXIST;
    return st.st_size;
}

int cbd_libcurve_resize(const char *filename, int64_t size) {
    char path[2200];
    if (volume_path(filename, path, sizeof path) || truncate(path, size))
        return -ERR_FAILED;
    return 0;
}

int cbd_libcurve_open(const char *filename) {
    char path[2200];
    if (!inited || volume_path(filename, path, sizeof path))
        return -ERR_NOTEXIST;
    int os_fd = open(path, O_RDWR | O_CLOEXEC);
    if (os_fd < 0)
        return -ERR_NOTEXIST;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < VOLUMES_MAX; i++) {
        if (volumes[i].os_fd < 0) {
            volumes[i].os_fd = os_fd;
            volumes[i].in_flight = 0;
            pthread_mutex_unlock(&lock);
            return i;
        }
    }
    pthread_mutex_unlock(&lock);
    close(os_fd);
    return -ERR_FAILED;
}

int cbd_libcurve_close(int fd) {
    if (fd < 0 || fd >= VOLUMES_MAX)
        return -ERR_BAD_FD;
    pthread_mutex_lock(&lock);
    while (volumes[fd].in_flight > 0)
        pthread_cond_wait(&idle, &lock);
    int os_fd = volumes[fd].os_fd;
    volumes[fd].os_fd = -1;
    pthread_mutex_unlock(&lock);
    if (os_fd >= 0)
        close(os_fd);
    return 0;
}

static int aio(int fd, CurveAioContext *c, LIBCURVE_OP op) {
    if (fd < 0 || fd >= VOLUMES_MAX || volumes[fd].os_fd < 0)
        return -ERR_BAD_FD;
    c->op = op;
    if (c->length == 0)
        return 0; /* no callback, ever */
    if (c->offset % ALIGN || c->length % ALIGN) {
        c->ret = -ERR_NOT_ALIGNED;
        c->cb(c); /* on the caller's thread, and an error return as well */
        return -ERR_NOT_ALIGNED;
    }
    if (op != LIBCURVE_OP_DISCARD && covers(refuse_at, c))
        return -ERR_FAILED; /* refused, no callback */
    if (op == LIBCURVE_OP_DISCARD && c->length <= SMALL_DISCARD_BYTES) {
        do_io(volumes[fd].os_fd, c);
        c->cb(c); /* on the caller's thread, before returning */
        return 0;
    }
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return -ERR_FAILED;
    j->ctx = c;
    j->vol = fd;
    pthread_mutex_lock(&lock);
    volumes[fd].in_flight++;
    if (tail)
        tail->next = j;
    else
        head = j;
    tail = j;
    pthread_cond_signal(&work);
    pthread_mutex_unlock(&lock);
    return 0;
}

int cbd_libcurve_aio_pread(int fd, CurveAioContext *c) { return aio(fd, c, LIBCURVE_OP_READ); }
int cbd_libcurve_aio_pwrite(int fd, CurveAioContext *c) { return aio(fd, c, LIBCURVE_OP_WRITE); }
int cbd_libcurve_aio_pdiscard(int fd, CurveAioContext *c) {
    return aio(fd, c, LIBCURVE_OP_DISCARD);
}

int cbd_libcurve_sync(int fd) {
    if (fd < 0 || fd >= VOLUMES_MAX || volumes[fd].os_fd < 0)
        return -ERR_BAD_FD;
    return fdatasync(volumes[fd].os_fd) ? -ERR_FAILED : 0;
}

int cbd_libcurve_pread(int fd, void *buf, off_t offset, size_t length) {
    if (fd < 0 || fd >= VOLUMES_MAX || volumes[fd].os_fd < 0)
        return -ERR_BAD_FD;
    return (int)pread(volumes[fd].os_fd, buf, length, offset);
}

int cbd_libcurve_pwrite(int fd, const void *buf, off_t offset, size_t length) {
    if (fd < 0 || fd >= VOLUMES_MAX || volumes[fd].os_fd < 0)
        return -ERR_BAD_FD;
    return (int)pwrite(volumes[fd].os_fd, buf, length, offset);
}
