/*
 * A fake libnvidia-ml.so for the nvidia-exporter tests: the real nvml-wrapper loads it through
 * --nvml.library, so the exporter's whole NVML path (dlopen, symbol lookup, ABI, error codes)
 * runs without a GPU. It implements only the functions the exporter calls, with the struct
 * layouts of the NVML 12/13 header.
 *
 * Its behaviour comes from a scenario file named by $FAKE_NVML_SCENARIO, read at nvmlInit_v2.
 * One directive per line; `#` starts a comment. Global directives:
 *   driver_version 550.54.15        cuda_version 12040        init_error <nvmlReturn>
 *   reload_after <n>   after n device-count calls every call answers RM_VERSION_MISMATCH (18)
 *                      until nvmlShutdown + nvmlInit_v2; happens once per process
 *   slow <function> <ms> <after>    that function sleeps <ms> on every call after the first <after>
 * `gpu` starts a GPU; the lines after it describe that GPU:
 *   name <text>   uuid <text>   pci <bus id>   vbios <text>   minor <n>
 *   memory <total> <reserved> <used>           (bytes; free is what remains)
 *   util <gpu %> <memory %>   temp <C>   memtemp <C>   power <mW>   energy <mJ>
 *   power_limit <mW>   enforced_limit <mW>   enc <%>   dec <%>
 *   clocks <graphics> <sm> <memory> <video>    (MHz)
 *   fans <count> <%>   pstate <n>   throttle <mask>   throttle_supported <mask>
 *   violation <policy 0..5> <ns>
 *   pcie <gen> <width> <max gen> <max width> <replays>   pcie_bytes <tx> <rx>
 *   ecc <enabled> <vol corrected> <vol uncorrected> <agg corrected> <agg uncorrected>
 *   remap <correctable> <uncorrectable> <pending> <failure>
 *   nvlink <tx KiB> <rx KiB> <tx KiB/s> <rx KiB/s>
 *                              NVLink data counters summed over all links (fields 138/139, only
 *                              with scopeId UINT_MAX); each field-values call that asks for them
 *                              moves the field timestamps on by exactly 1 s and the counters by
 *                              the rates, so a rate between two samples is exact
 *   field_error <field id> <nvmlReturn>   that field value answers this code on its own
 *   vgpu_license <supported 0|1> <vGPU feature state>
 *                              nvmlDeviceGetGridLicensableFeatures_v4; without it the function
 *                              answers NOT_SUPPORTED
 *   unsupported <function>     that function answers NOT_SUPPORTED (3) on this GPU
 *   lost_after <n>             after n handle lookups every query answers GPU_IS_LOST (15)
 *   lost_at <function>         the GPU is lost from the first call of that function on
 *   xid <code> [<delay ms>]    delivered once through nvmlEventSetWait_v2, no earlier than
 *                              <delay ms> after the scenario was loaded; while a GPU in the
 *                              event set is lost, the wait answers GPU_IS_LOST instead
 *   gpm <graphics %> <sm %> <sm occupancy %> <tensor %> <dram %> <pcie tx MiB/s> <pcie rx MiB/s>
 *                              makes the GPU support GPM (Hopper+) with these metric values
 *   process <pid> <C|G|CG> <bytes> <sm %> <mem %> <enc %> <dec %> <gone after> <name>
 *                              gone after: the process exits after that many compute-process
 *                              queries on this GPU (0 = never)
 *   mig <gpu instance> <compute instance> <total> <used> <uuid> <name>   (enables MIG mode)
 *
 * With $FAKE_NVML_CALL_LOG set, every per-GPU call appends `<function> gpu=<index>` to that
 * file, and every field value asked `nvmlDeviceGetFieldValues(<field id>) gpu=<index>`, so a test
 * can count what the exporter asked.
 *
 * Built with -DFAKE_NVML_MISSING_SYMBOLS it leaves out a few functions, to prove that a
 * missing symbol costs only its own series; -DFAKE_NVML_NO_SHUTDOWN leaves out nvmlShutdown,
 * which nvml-wrapper's destructor would call unchecked.
 *
 * The library is linked with -z nodelete so that "once per process" state survives the
 * dlclose that nvml-wrapper does on shutdown.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_TIMEOUT = 10,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18,
    NVML_ERROR_UNKNOWN = 999,
};

#define MAX_GPUS 16
#define MAX_LIST 64
#define MAX_MIG 8
#define NAME_LEN 96

typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

typedef struct {
    unsigned int gpu, memory;
} nvmlUtilization_t;

typedef struct {
    char busIdLegacy[16];
    unsigned int domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;

typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

typedef struct {
    unsigned int pid;
    unsigned long long timeStamp;
    unsigned int smUtil, memUtil, encUtil, decUtil;
} nvmlProcessUtilizationSample_t;

typedef struct {
    unsigned long long referenceTime, violationTime;
} nvmlViolationTime_t;

typedef union {
    double dVal;
    int siVal;
    unsigned int uiVal;
    unsigned long ulVal;
    unsigned long long ullVal;
    long long sllVal;
    unsigned short usVal;
} nvmlValue_t;

typedef struct {
    unsigned int fieldId, scopeId;
    long long timestamp, latencyUsec;
    unsigned int valueType;
    nvmlReturn_t nvmlReturn;
    nvmlValue_t value;
} nvmlFieldValue_t;

typedef struct gpu gpu_t;

typedef struct {
    void *device;
    unsigned long long eventType, eventData;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlEventData_t;

typedef struct {
    unsigned int pid;
    char type[3];
    unsigned long long bytes;
    unsigned int sm, mem, enc, dec;
    unsigned int gone_after;
    char name[NAME_LEN];
} process_t;

typedef struct mig {
    int kind; /* 1: MIG device */
    gpu_t *parent;
    unsigned int gi, ci;
    unsigned long long total, used;
    char uuid[NAME_LEN], name[NAME_LEN];
} mig_t;

struct gpu {
    int kind; /* 0: physical GPU */
    unsigned int index;
    char name[NAME_LEN], uuid[NAME_LEN], pci[32], vbios[32];
    unsigned int minor;
    unsigned long long mem_total, mem_reserved, mem_used;
    unsigned int util_gpu, util_mem, temp, memtemp, enc, dec, pstate, fans, fan_pct;
    unsigned int power, power_limit, enforced_limit;
    unsigned long long energy;
    unsigned int clocks[4];
    unsigned long long throttle, throttle_supported;
    unsigned long long violation[6];
    unsigned int pcie_gen, pcie_width, pcie_max_gen, pcie_max_width, pcie_replay;
    unsigned long long pcie_tx, pcie_rx;
    unsigned int ecc_enabled;
    unsigned long long ecc[2][2]; /* [volatile|aggregate][corrected|uncorrected] */
    unsigned int remap[4];
    char unsupported[MAX_LIST][48];
    int n_unsupported;
    int lost_after; /* -1: never */
    char lost_at[48];
    int lost_now;
    unsigned int handle_lookups;
    int xid, xid_delivered, xid_delay_ms;
    process_t procs[MAX_LIST];
    int n_procs;
    unsigned int process_queries;
    mig_t migs[MAX_MIG];
    int n_migs;
    double gpm[7]; /* graphics, sm, occupancy, tensor, dram (%), pcie tx, rx (MiB/s); <0: none */
    unsigned long long nvlink[4]; /* tx, rx (KiB), tx, rx (KiB/s); nvlink[0] unset: no NVLink */
    unsigned int nvlink_reads;
    unsigned int field_errors[MAX_LIST][2]; /* field id, nvmlReturn */
    int n_field_errors;
    unsigned int vgpu_supported, vgpu_state;
};

typedef struct {
    char fn[48];
    unsigned int ms, after, calls;
} slow_t;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int init_count;
static gpu_t gpus[MAX_GPUS];
static int n_gpus;
static char driver_version[80], nvml_version[80];
static int cuda_version;
static int init_error;
static int reload_after = -1;
static unsigned int count_calls;
static int reload_pending, reload_done; /* reload_done survives re-init: once per process */
static slow_t slows[MAX_LIST];
static int n_slows;
static struct timespec loaded_at;
static FILE *call_log;

__attribute__((unused)) static long long ms_since_load(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - loaded_at.tv_sec) * 1000LL + (now.tv_nsec - loaded_at.tv_nsec) / 1000000LL;
}

static void copy_str(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src);
}

static char *rest_of(char *line, int skip_words) {
    char *p = line;
    for (int i = 0; i < skip_words; i++) {
        while (*p == ' ' || *p == '\t') p++;
        while (*p && *p != ' ' && *p != '\t') p++;
    }
    while (*p == ' ' || *p == '\t') p++;
    char *end = p + strlen(p);
    while (end > p && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ')) *--end = 0;
    return p;
}

static void reset_state(void) {
    memset(gpus, 0, sizeof gpus);
    n_gpus = 0;
    copy_str(driver_version, sizeof driver_version, "550.54.15");
    copy_str(nvml_version, sizeof nvml_version, "12.550.54.15");
    cuda_version = 12040;
    init_error = 0;
    reload_after = -1;
    count_calls = 0;
    reload_pending = 0;
    n_slows = 0;
}

static int load_scenario(void) {
    const char *path = getenv("FAKE_NVML_SCENARIO");
    if (!path) return NVML_ERROR_DRIVER_NOT_LOADED;
    FILE *f = fopen(path, "r");
    if (!f) return NVML_ERROR_DRIVER_NOT_LOADED;
    reset_state();
    clock_gettime(CLOCK_MONOTONIC, &loaded_at);
    const char *log_path = getenv("FAKE_NVML_CALL_LOG");
    if (log_path && !call_log) call_log = fopen(log_path, "a");
    char line[512], key[64];
    gpu_t *g = NULL;
    while (fgets(line, sizeof line, f)) {
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        if (sscanf(line, "%63s", key) != 1) continue;
        if (!strcmp(key, "driver_version")) copy_str(driver_version, sizeof driver_version, rest_of(line, 1));
        else if (!strcmp(key, "cuda_version")) sscanf(line, "%*s %d", &cuda_version);
        else if (!strcmp(key, "init_error")) sscanf(line, "%*s %d", &init_error);
        else if (!strcmp(key, "reload_after")) sscanf(line, "%*s %d", &reload_after);
        else if (!strcmp(key, "slow") && n_slows < MAX_LIST) {
            slow_t *s = &slows[n_slows++];
            sscanf(line, "%*s %47s %u %u", s->fn, &s->ms, &s->after);
        } else if (!strcmp(key, "gpu") && n_gpus < MAX_GPUS) {
            g = &gpus[n_gpus];
            /* Every reading starts unset: a function whose value the scenario does not give
             * answers NOT_SUPPORTED, as a real GPU lacking the sensor would. */
            memset(g, 0xFF, sizeof *g);
            memset(g->name, 0, sizeof g->name);
            memset(g->vbios, 0, sizeof g->vbios);
            g->n_unsupported = 0;
            g->handle_lookups = 0;
            g->xid = 0;
            g->xid_delivered = 0;
            g->xid_delay_ms = 0;
            g->n_procs = 0;
            g->process_queries = 0;
            g->n_migs = 0;
            g->gpm[0] = -1;
            g->nvlink_reads = 0;
            g->n_field_errors = 0;
            g->kind = 0;
            g->index = n_gpus++;
            g->lost_after = -1;
            g->lost_at[0] = 0;
            g->lost_now = 0;
            g->minor = g->index;
            snprintf(g->uuid, sizeof g->uuid, "GPU-00000000-0000-0000-0000-%012u", g->index);
            snprintf(g->pci, sizeof g->pci, "00000000:%02X:00.0", g->index + 1);
        } else if (!g) {
            continue;
        } else if (!strcmp(key, "name")) copy_str(g->name, sizeof g->name, rest_of(line, 1));
        else if (!strcmp(key, "uuid")) copy_str(g->uuid, sizeof g->uuid, rest_of(line, 1));
        else if (!strcmp(key, "pci")) copy_str(g->pci, sizeof g->pci, rest_of(line, 1));
        else if (!strcmp(key, "vbios")) copy_str(g->vbios, sizeof g->vbios, rest_of(line, 1));
        else if (!strcmp(key, "minor")) sscanf(line, "%*s %u", &g->minor);
        else if (!strcmp(key, "memory")) sscanf(line, "%*s %llu %llu %llu", &g->mem_total, &g->mem_reserved, &g->mem_used);
        else if (!strcmp(key, "util")) sscanf(line, "%*s %u %u", &g->util_gpu, &g->util_mem);
        else if (!strcmp(key, "temp")) sscanf(line, "%*s %u", &g->temp);
        else if (!strcmp(key, "memtemp")) sscanf(line, "%*s %u", &g->memtemp);
        else if (!strcmp(key, "power")) sscanf(line, "%*s %u", &g->power);
        else if (!strcmp(key, "energy")) sscanf(line, "%*s %llu", &g->energy);
        else if (!strcmp(key, "power_limit")) sscanf(line, "%*s %u", &g->power_limit);
        else if (!strcmp(key, "enforced_limit")) sscanf(line, "%*s %u", &g->enforced_limit);
        else if (!strcmp(key, "enc")) sscanf(line, "%*s %u", &g->enc);
        else if (!strcmp(key, "dec")) sscanf(line, "%*s %u", &g->dec);
        else if (!strcmp(key, "clocks")) sscanf(line, "%*s %u %u %u %u", &g->clocks[0], &g->clocks[1], &g->clocks[2], &g->clocks[3]);
        else if (!strcmp(key, "fans")) sscanf(line, "%*s %u %u", &g->fans, &g->fan_pct);
        else if (!strcmp(key, "pstate")) sscanf(line, "%*s %u", &g->pstate);
        else if (!strcmp(key, "throttle")) sscanf(line, "%*s %lli", &g->throttle);
        else if (!strcmp(key, "throttle_supported")) sscanf(line, "%*s %lli", &g->throttle_supported);
        else if (!strcmp(key, "violation")) {
            unsigned int p;
            unsigned long long ns;
            if (sscanf(line, "%*s %u %llu", &p, &ns) == 2 && p < 6) g->violation[p] = ns;
        } else if (!strcmp(key, "pcie")) sscanf(line, "%*s %u %u %u %u %u", &g->pcie_gen, &g->pcie_width, &g->pcie_max_gen, &g->pcie_max_width, &g->pcie_replay);
        else if (!strcmp(key, "pcie_bytes")) sscanf(line, "%*s %llu %llu", &g->pcie_tx, &g->pcie_rx);
        else if (!strcmp(key, "ecc")) sscanf(line, "%*s %u %llu %llu %llu %llu", &g->ecc_enabled, &g->ecc[0][0], &g->ecc[0][1], &g->ecc[1][0], &g->ecc[1][1]);
        else if (!strcmp(key, "remap")) sscanf(line, "%*s %u %u %u %u", &g->remap[0], &g->remap[1], &g->remap[2], &g->remap[3]);
        else if (!strcmp(key, "nvlink")) sscanf(line, "%*s %llu %llu %llu %llu", &g->nvlink[0], &g->nvlink[1], &g->nvlink[2], &g->nvlink[3]);
        else if (!strcmp(key, "field_error") && g->n_field_errors < MAX_LIST) {
            unsigned int *e = g->field_errors[g->n_field_errors];
            if (sscanf(line, "%*s %u %u", &e[0], &e[1]) == 2) g->n_field_errors++;
        } else if (!strcmp(key, "vgpu_license")) sscanf(line, "%*s %u %u", &g->vgpu_supported, &g->vgpu_state);
        else if (!strcmp(key, "unsupported") && g->n_unsupported < MAX_LIST) sscanf(line, "%*s %47s", g->unsupported[g->n_unsupported++]);
        else if (!strcmp(key, "lost_after")) sscanf(line, "%*s %d", &g->lost_after);
        else if (!strcmp(key, "lost_at")) sscanf(line, "%*s %47s", g->lost_at);
        else if (!strcmp(key, "xid")) sscanf(line, "%*s %d %d", &g->xid, &g->xid_delay_ms);
        else if (!strcmp(key, "gpm")) sscanf(line, "%*s %lf %lf %lf %lf %lf %lf %lf", &g->gpm[0], &g->gpm[1], &g->gpm[2], &g->gpm[3], &g->gpm[4], &g->gpm[5], &g->gpm[6]);
        else if (!strcmp(key, "process") && g->n_procs < MAX_LIST) {
            process_t *p = &g->procs[g->n_procs];
            if (sscanf(line, "%*s %u %2s %llu %u %u %u %u %u", &p->pid, p->type, &p->bytes, &p->sm, &p->mem, &p->enc, &p->dec, &p->gone_after) == 8) {
                copy_str(p->name, sizeof p->name, rest_of(line, 9));
                g->n_procs++;
            }
        } else if (!strcmp(key, "mig") && g->n_migs < MAX_MIG) {
            mig_t *m = &g->migs[g->n_migs];
            if (sscanf(line, "%*s %u %u %llu %llu %95s", &m->gi, &m->ci, &m->total, &m->used, m->uuid) == 5) {
                m->kind = 1;
                m->parent = g;
                copy_str(m->name, sizeof m->name, rest_of(line, 6));
                g->n_migs++;
            }
        }
    }
    fclose(f);
    return NVML_SUCCESS;
}

static void maybe_sleep(const char *fn) {
    unsigned int ms = 0;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < n_slows; i++) {
        if (!strcmp(slows[i].fn, fn) && slows[i].calls++ >= slows[i].after) ms = slows[i].ms;
    }
    pthread_mutex_unlock(&lock);
    if (ms) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* The checks every call makes: initialised, driver not reloaded under us, the slow-call probe. */
static nvmlReturn_t enter_global(const char *fn) {
    if (init_count <= 0) return NVML_ERROR_UNINITIALIZED;
    if (reload_pending) return NVML_ERROR_LIB_RM_VERSION_MISMATCH;
    maybe_sleep(fn);
    return NVML_SUCCESS;
}

static gpu_t *as_gpu(void *handle) {
    for (int i = 0; i < n_gpus; i++)
        if (handle == &gpus[i]) return &gpus[i];
    return NULL;
}

static mig_t *as_mig(void *handle) {
    for (int i = 0; i < n_gpus; i++)
        for (int j = 0; j < gpus[i].n_migs; j++)
            if (handle == &gpus[i].migs[j]) return &gpus[i].migs[j];
    return NULL;
}

static int is_unsupported(gpu_t *g, const char *fn) {
    for (int i = 0; i < g->n_unsupported; i++)
        if (!strcmp(g->unsupported[i], fn)) return 1;
    return 0;
}

static int is_lost(gpu_t *g) {
    return g->lost_now || (g->lost_after >= 0 && g->handle_lookups > (unsigned int)g->lost_after);
}

static void log_call(const char *fn, gpu_t *g) {
    if (!call_log) return;
    pthread_mutex_lock(&lock);
    fprintf(call_log, "%s gpu=%u\n", fn, g->index);
    fflush(call_log);
    pthread_mutex_unlock(&lock);
}

/* Per-GPU checks: a valid handle, not lost, the function supported. */
static nvmlReturn_t enter_gpu(void *handle, const char *fn, gpu_t **out) {
    nvmlReturn_t r = enter_global(fn);
    if (r) return r;
    gpu_t *g = as_gpu(handle);
    if (!g) return NVML_ERROR_INVALID_ARGUMENT;
    log_call(fn, g);
    if (g->lost_at[0] && !strcmp(g->lost_at, fn)) g->lost_now = 1;
    if (is_lost(g)) return NVML_ERROR_GPU_IS_LOST;
    if (is_unsupported(g, fn)) return NVML_ERROR_NOT_SUPPORTED;
    *out = g;
    return NVML_SUCCESS;
}

/* A reading the scenario did not set: the GPU does not support it. */
#define REQUIRE(x)                                              \
    if ((x) == (__typeof__(x)) - 1) return NVML_ERROR_NOT_SUPPORTED;

#define GPU_ENTER(fn)                              \
    gpu_t *g = NULL;                               \
    nvmlReturn_t r_ = enter_gpu(device, fn, &g);   \
    if (r_) return r_;

static nvmlReturn_t put_string(char *buf, unsigned int len, const char *value) {
    if (!buf) return NVML_ERROR_INVALID_ARGUMENT;
    if (strlen(value) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(buf, value);
    return NVML_SUCCESS;
}

/* ---- init and system ---- */

nvmlReturn_t nvmlInit_v2(void) {
    pthread_mutex_lock(&lock);
    nvmlReturn_t r = NVML_SUCCESS;
    if (init_count == 0) {
        r = load_scenario();
        if (!r && init_error) r = init_error;
    }
    if (!r) {
        init_count++;
        reload_pending = 0; /* a fresh init after a driver reload talks to the new driver */
    }
    pthread_mutex_unlock(&lock);
    return r;
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    return nvmlInit_v2();
}

#ifndef FAKE_NVML_NO_SHUTDOWN
nvmlReturn_t nvmlShutdown(void) {
    pthread_mutex_lock(&lock);
    nvmlReturn_t r = init_count > 0 ? NVML_SUCCESS : NVML_ERROR_UNINITIALIZED;
    if (init_count > 0) init_count--;
    pthread_mutex_unlock(&lock);
    return r;
}
#endif

const char *nvmlErrorString(nvmlReturn_t r) {
    (void)r;
    return "fake nvml error";
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    nvmlReturn_t r = enter_global("nvmlSystemGetDriverVersion");
    return r ? r : put_string(version, length, driver_version);
}

nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length) {
    nvmlReturn_t r = enter_global("nvmlSystemGetNVMLVersion");
    return r ? r : put_string(version, length, nvml_version);
}

nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *version) {
    nvmlReturn_t r = enter_global("nvmlSystemGetCudaDriverVersion_v2");
    if (r) return r;
    *version = cuda_version;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetProcessName(unsigned int pid, char *name, unsigned int length) {
    nvmlReturn_t r = enter_global("nvmlSystemGetProcessName");
    if (r) return r;
    for (int i = 0; i < n_gpus; i++)
        for (int j = 0; j < gpus[i].n_procs; j++)
            if (gpus[i].procs[j].pid == pid) return put_string(name, length, gpus[i].procs[j].name);
    return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    nvmlReturn_t r = enter_global("nvmlDeviceGetCount_v2");
    if (r) return r;
    pthread_mutex_lock(&lock);
    count_calls++;
    if (reload_after >= 0 && !reload_done && count_calls > (unsigned int)reload_after) {
        reload_pending = 1;
        reload_done = 1;
    }
    r = reload_pending ? NVML_ERROR_LIB_RM_VERSION_MISMATCH : NVML_SUCCESS;
    pthread_mutex_unlock(&lock);
    if (!r) *count = (unsigned int)n_gpus;
    return r;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device) {
    nvmlReturn_t r = enter_global("nvmlDeviceGetHandleByIndex_v2");
    if (r) return r;
    if (index >= (unsigned int)n_gpus) return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    gpus[index].handle_lookups++;
    pthread_mutex_unlock(&lock);
    *device = &gpus[index];
    return NVML_SUCCESS;
}

/* ---- identity ---- */

nvmlReturn_t nvmlDeviceGetName(void *device, char *name, unsigned int length) {
    nvmlReturn_t r = enter_global("nvmlDeviceGetName");
    if (r) return r;
    mig_t *m = as_mig(device);
    if (m) return put_string(name, length, m->name);
    GPU_ENTER("nvmlDeviceGetName");
    return put_string(name, length, g->name);
}

nvmlReturn_t nvmlDeviceGetUUID(void *device, char *uuid, unsigned int length) {
    nvmlReturn_t r = enter_global("nvmlDeviceGetUUID");
    if (r) return r;
    mig_t *m = as_mig(device);
    if (m) return put_string(uuid, length, m->uuid);
    GPU_ENTER("nvmlDeviceGetUUID");
    return put_string(uuid, length, g->uuid);
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(void *device, nvmlPciInfo_t *pci) {
    GPU_ENTER("nvmlDeviceGetPciInfo_v3");
    memset(pci, 0, sizeof *pci);
    copy_str(pci->busId, sizeof pci->busId, g->pci);
    copy_str(pci->busIdLegacy, sizeof pci->busIdLegacy, g->pci + 4);
    sscanf(g->pci, "%x:%x:%x", &pci->domain, &pci->bus, &pci->device);
    pci->pciDeviceId = 0x233010de;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetIndex(void *device, unsigned int *index) {
    GPU_ENTER("nvmlDeviceGetIndex");
    *index = g->index;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMinorNumber(void *device, unsigned int *minor) {
    GPU_ENTER("nvmlDeviceGetMinorNumber");
    REQUIRE(g->minor);
    *minor = g->minor;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetVbiosVersion(void *device, char *version, unsigned int length) {
    GPU_ENTER("nvmlDeviceGetVbiosVersion");
    return put_string(version, length, g->vbios[0] ? g->vbios : "96.00.99.00.01");
}

/* ---- utilisation, memory, thermals, power ---- */

nvmlReturn_t nvmlDeviceGetUtilizationRates(void *device, nvmlUtilization_t *u) {
    GPU_ENTER("nvmlDeviceGetUtilizationRates");
    REQUIRE(g->util_gpu);
    u->gpu = g->util_gpu;
    u->memory = g->util_mem;
    return NVML_SUCCESS;
}

typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;

/* The v1 call of drivers before R510: no reserved field, used includes it. */
nvmlReturn_t nvmlDeviceGetMemoryInfo(void *device, nvmlMemory_t *mem) {
    nvmlReturn_t r = enter_global("nvmlDeviceGetMemoryInfo");
    if (r) return r;
    mig_t *m = as_mig(device);
    if (m) {
        mem->total = m->total;
        mem->used = m->used;
        mem->free = m->total - m->used;
        return NVML_SUCCESS;
    }
    GPU_ENTER("nvmlDeviceGetMemoryInfo");
    REQUIRE(g->mem_total);
    mem->total = g->mem_total;
    mem->used = g->mem_reserved + g->mem_used;
    mem->free = g->mem_total - mem->used;
    return NVML_SUCCESS;
}

#ifndef FAKE_NVML_MISSING_SYMBOLS
nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(void *device, nvmlMemory_v2_t *mem) {
    nvmlReturn_t r = enter_global("nvmlDeviceGetMemoryInfo_v2");
    if (r) return r;
    if (mem->version != (unsigned int)(sizeof(nvmlMemory_v2_t) | (2u << 24))) return NVML_ERROR_INVALID_ARGUMENT;
    mig_t *m = as_mig(device);
    if (m) {
        mem->total = m->total;
        mem->reserved = 0;
        mem->used = m->used;
        mem->free = m->total - m->used;
        return NVML_SUCCESS;
    }
    GPU_ENTER("nvmlDeviceGetMemoryInfo_v2");
    REQUIRE(g->mem_total);
    mem->total = g->mem_total;
    mem->reserved = g->mem_reserved;
    mem->used = g->mem_used;
    mem->free = g->mem_total - g->mem_reserved - g->mem_used;
    return NVML_SUCCESS;
}
#endif

nvmlReturn_t nvmlDeviceGetTemperature(void *device, int sensor, unsigned int *temp) {
    GPU_ENTER("nvmlDeviceGetTemperature");
    if (sensor != 0) return NVML_ERROR_INVALID_ARGUMENT;
    REQUIRE(g->temp);
    *temp = g->temp;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(void *device, unsigned int *mw) {
    GPU_ENTER("nvmlDeviceGetPowerUsage");
    REQUIRE(g->power);
    *mw = g->power;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(void *device, unsigned long long *mj) {
    GPU_ENTER("nvmlDeviceGetTotalEnergyConsumption");
    REQUIRE(g->energy);
    *mj = g->energy;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimit(void *device, unsigned int *mw) {
    GPU_ENTER("nvmlDeviceGetPowerManagementLimit");
    REQUIRE(g->power_limit);
    *mw = g->power_limit;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(void *device, unsigned int *mw) {
    GPU_ENTER("nvmlDeviceGetEnforcedPowerLimit");
    REQUIRE(g->enforced_limit);
    *mw = g->enforced_limit;
    return NVML_SUCCESS;
}

#ifndef FAKE_NVML_MISSING_SYMBOLS
nvmlReturn_t nvmlDeviceGetEncoderUtilization(void *device, unsigned int *util, unsigned int *period_us) {
    GPU_ENTER("nvmlDeviceGetEncoderUtilization");
    REQUIRE(g->enc);
    *util = g->enc;
    *period_us = 167000;
    return NVML_SUCCESS;
}
#endif

nvmlReturn_t nvmlDeviceGetDecoderUtilization(void *device, unsigned int *util, unsigned int *period_us) {
    GPU_ENTER("nvmlDeviceGetDecoderUtilization");
    REQUIRE(g->dec);
    *util = g->dec;
    *period_us = 167000;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetClockInfo(void *device, int type, unsigned int *mhz) {
    GPU_ENTER("nvmlDeviceGetClockInfo");
    if (type < 0 || type > 3) return NVML_ERROR_INVALID_ARGUMENT;
    REQUIRE(g->clocks[type]);
    *mhz = g->clocks[type];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetNumFans(void *device, unsigned int *n) {
    GPU_ENTER("nvmlDeviceGetNumFans");
    REQUIRE(g->fans);
    *n = g->fans;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetFanSpeed_v2(void *device, unsigned int fan, unsigned int *pct) {
    GPU_ENTER("nvmlDeviceGetFanSpeed_v2");
    if (fan >= g->fans) return NVML_ERROR_INVALID_ARGUMENT;
    *pct = g->fan_pct;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPerformanceState(void *device, int *state) {
    GPU_ENTER("nvmlDeviceGetPerformanceState");
    REQUIRE(g->pstate);
    *state = (int)g->pstate;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCurrentClocksThrottleReasons(void *device, unsigned long long *mask) {
    GPU_ENTER("nvmlDeviceGetCurrentClocksThrottleReasons");
    REQUIRE(g->throttle);
    *mask = g->throttle;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetSupportedClocksThrottleReasons(void *device, unsigned long long *mask) {
    GPU_ENTER("nvmlDeviceGetSupportedClocksThrottleReasons");
    REQUIRE(g->throttle_supported);
    *mask = g->throttle_supported;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetViolationStatus(void *device, int policy, nvmlViolationTime_t *v) {
    GPU_ENTER("nvmlDeviceGetViolationStatus");
    if (policy < 0 || policy > 5) return NVML_ERROR_INVALID_ARGUMENT;
    REQUIRE(g->violation[policy]);
    v->referenceTime = 1700000000000000ULL;
    v->violationTime = g->violation[policy];
    return NVML_SUCCESS;
}

/* ---- PCIe, ECC, remapped rows, field values ---- */

nvmlReturn_t nvmlDeviceGetCurrPcieLinkGeneration(void *device, unsigned int *v) {
    GPU_ENTER("nvmlDeviceGetCurrPcieLinkGeneration");
    REQUIRE(g->pcie_gen);
    *v = g->pcie_gen;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCurrPcieLinkWidth(void *device, unsigned int *v) {
    GPU_ENTER("nvmlDeviceGetCurrPcieLinkWidth");
    REQUIRE(g->pcie_width);
    *v = g->pcie_width;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxPcieLinkGeneration(void *device, unsigned int *v) {
    GPU_ENTER("nvmlDeviceGetMaxPcieLinkGeneration");
    REQUIRE(g->pcie_max_gen);
    *v = g->pcie_max_gen;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxPcieLinkWidth(void *device, unsigned int *v) {
    GPU_ENTER("nvmlDeviceGetMaxPcieLinkWidth");
    REQUIRE(g->pcie_max_width);
    *v = g->pcie_max_width;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPcieReplayCounter(void *device, unsigned int *v) {
    GPU_ENTER("nvmlDeviceGetPcieReplayCounter");
    REQUIRE(g->pcie_replay);
    *v = g->pcie_replay;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetEccMode(void *device, int *current, int *pending) {
    GPU_ENTER("nvmlDeviceGetEccMode");
    REQUIRE(g->ecc_enabled);
    *current = (int)g->ecc_enabled;
    *pending = (int)g->ecc_enabled;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEccErrors(void *device, int error_type, int counter_type, unsigned long long *count) {
    GPU_ENTER("nvmlDeviceGetTotalEccErrors");
    if (error_type < 0 || error_type > 1 || counter_type < 0 || counter_type > 1) return NVML_ERROR_INVALID_ARGUMENT;
    if (g->ecc_enabled != 1) return NVML_ERROR_NOT_SUPPORTED;
    REQUIRE(g->ecc[counter_type][error_type]);
    *count = g->ecc[counter_type][error_type];
    return NVML_SUCCESS;
}

#ifndef FAKE_NVML_MISSING_SYMBOLS
static int field_error(gpu_t *g, unsigned int field, nvmlReturn_t *code) {
    for (int i = 0; i < g->n_field_errors; i++) {
        if (g->field_errors[i][0] == field) {
            *code = (nvmlReturn_t)g->field_errors[i][1];
            return 1;
        }
    }
    return 0;
}

nvmlReturn_t nvmlDeviceGetFieldValues(void *device, int count, nvmlFieldValue_t *values) {
    GPU_ENTER("nvmlDeviceGetFieldValues");
    if (count < 0 || (count > 0 && !values)) return NVML_ERROR_INVALID_ARGUMENT;
    /* One step of the NVLink clock per call that reads the NVLink counters. */
    unsigned int step = 0;
    for (int i = 0; i < count; i++) {
        if (values[i].fieldId == 138 || values[i].fieldId == 139) {
            pthread_mutex_lock(&lock);
            step = g->nvlink_reads++;
            pthread_mutex_unlock(&lock);
            break;
        }
    }
    for (int i = 0; i < count; i++) {
        nvmlFieldValue_t *v = &values[i];
        if (call_log) {
            char fn[64];
            snprintf(fn, sizeof fn, "nvmlDeviceGetFieldValues(%u)", v->fieldId);
            log_call(fn, g);
        }
        v->timestamp = 1700000000000000LL;
        v->latencyUsec = 0;
        v->nvmlReturn = NVML_SUCCESS;
        v->valueType = 3; /* unsigned long long */
        unsigned long long value = (unsigned long long)-1;
        nvmlReturn_t code;
        if (field_error(g, v->fieldId, &code)) {
            v->nvmlReturn = code;
            continue;
        }
        switch (v->fieldId) {
        case 82: if (g->memtemp != (unsigned int)-1) value = g->memtemp; break;
        case 138: case 139:
            if (g->nvlink[0] == (unsigned long long)-1) break;
            /* Only the sum over all links is implemented: a per-link scope is refused, so a
             * caller that forgets scopeId UINT_MAX gets no value. */
            if (v->scopeId != 0xFFFFFFFFu) {
                v->nvmlReturn = NVML_ERROR_INVALID_ARGUMENT;
                continue;
            }
            value = g->nvlink[v->fieldId - 138] + g->nvlink[v->fieldId - 136] * step;
            v->timestamp += (long long)step * 1000000LL;
            break;
        case 142: case 143: case 144: case 145:
            if (g->remap[v->fieldId - 142] != (unsigned int)-1) value = g->remap[v->fieldId - 142];
            break;
        case 197: value = g->pcie_tx; break;
        case 198: value = g->pcie_rx; break;
        default: break;
        }
        if (value == (unsigned long long)-1) v->nvmlReturn = NVML_ERROR_NOT_SUPPORTED;
        else v->value.ullVal = value;
    }
    return NVML_SUCCESS;
}
#endif

/* ---- vGPU licensing (nvml.h v4 structs) ---- */

typedef struct {
    unsigned int year;
    unsigned short month, day, hour, min, sec;
    unsigned char status;
} nvmlGridLicenseExpiry_t;

typedef struct {
    int featureCode; /* 1: vGPU, 2: NVIDIA RTX */
    unsigned int featureState;
    char licenseInfo[128], productName[128];
    unsigned int featureEnabled;
    nvmlGridLicenseExpiry_t licenseExpiry;
} nvmlGridLicensableFeature_t;

typedef struct {
    int isGridLicenseSupported;
    unsigned int licensableFeaturesCount;
    nvmlGridLicensableFeature_t gridLicensableFeatures[3];
} nvmlGridLicensableFeatures_t;

nvmlReturn_t nvmlDeviceGetGridLicensableFeatures_v4(void *device, nvmlGridLicensableFeatures_t *f) {
    GPU_ENTER("nvmlDeviceGetGridLicensableFeatures_v4");
    if (!f) return NVML_ERROR_INVALID_ARGUMENT;
    REQUIRE(g->vgpu_supported);
    memset(f, 0, sizeof *f);
    f->isGridLicenseSupported = g->vgpu_supported != 0;
    if (!f->isGridLicenseSupported) return NVML_SUCCESS;
    /* The vGPU feature comes second, so a reader must look for it by its code. */
    f->licensableFeaturesCount = 2;
    f->gridLicensableFeatures[0].featureCode = 2;
    copy_str(f->gridLicensableFeatures[0].productName, 128, "NVIDIA RTX Virtual Workstation");
    f->gridLicensableFeatures[1].featureCode = 1;
    f->gridLicensableFeatures[1].featureState = g->vgpu_state;
    f->gridLicensableFeatures[1].featureEnabled = 1;
    copy_str(f->gridLicensableFeatures[1].productName, 128, "NVIDIA Virtual Compute Server");
    return NVML_SUCCESS;
}

/* ---- processes ---- */

static int process_matches(process_t *p, char kind) {
    return strchr(p->type, kind) != NULL;
}

static int process_alive(gpu_t *g, process_t *p) {
    return p->gone_after == 0 || g->process_queries <= p->gone_after;
}

static nvmlReturn_t list_processes(gpu_t *g, char kind, unsigned int *count, nvmlProcessInfo_t *infos) {
    if (kind == 'C' && infos) {
        pthread_mutex_lock(&lock);
        g->process_queries++;
        pthread_mutex_unlock(&lock);
    }
    unsigned int n = 0;
    for (int i = 0; i < g->n_procs; i++)
        if (process_matches(&g->procs[i], kind) && process_alive(g, &g->procs[i])) n++;
    if (!infos || *count < n) {
        *count = n;
        return n == 0 ? NVML_SUCCESS : NVML_ERROR_INSUFFICIENT_SIZE;
    }
    unsigned int k = 0;
    for (int i = 0; i < g->n_procs; i++) {
        process_t *p = &g->procs[i];
        if (!process_matches(p, kind) || !process_alive(g, p)) continue;
        infos[k].pid = p->pid;
        infos[k].usedGpuMemory = p->bytes;
        infos[k].gpuInstanceId = 0xFFFFFFFF;
        infos[k].computeInstanceId = 0xFFFFFFFF;
        k++;
    }
    *count = k;
    return NVML_SUCCESS;
}

#ifndef FAKE_NVML_MISSING_SYMBOLS
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(void *device, unsigned int *count, nvmlProcessInfo_t *infos) {
    GPU_ENTER("nvmlDeviceGetComputeRunningProcesses_v3");
    return list_processes(g, 'C', count, infos);
}
#endif

nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(void *device, unsigned int *count, nvmlProcessInfo_t *infos) {
    GPU_ENTER("nvmlDeviceGetGraphicsRunningProcesses_v3");
    return list_processes(g, 'G', count, infos);
}

nvmlReturn_t nvmlDeviceGetProcessUtilization(void *device, nvmlProcessUtilizationSample_t *samples, unsigned int *count, unsigned long long last_seen) {
    GPU_ENTER("nvmlDeviceGetProcessUtilization");
    (void)last_seen;
    unsigned int n = 0;
    for (int i = 0; i < g->n_procs; i++)
        if (process_alive(g, &g->procs[i])) n++;
    if (n == 0) return NVML_ERROR_NOT_FOUND;
    if (!samples || *count < n) {
        *count = n;
        return NVML_ERROR_INSUFFICIENT_SIZE;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    unsigned long long now = (unsigned long long)tv.tv_sec * 1000000ULL + (unsigned long long)tv.tv_usec;
    unsigned int k = 0;
    for (int i = 0; i < g->n_procs; i++) {
        process_t *p = &g->procs[i];
        if (!process_alive(g, p)) continue;
        samples[k].pid = p->pid;
        samples[k].timeStamp = now;
        samples[k].smUtil = p->sm;
        samples[k].memUtil = p->mem;
        samples[k].encUtil = p->enc;
        samples[k].decUtil = p->dec;
        k++;
    }
    *count = k;
    return NVML_SUCCESS;
}

/* ---- MIG ---- */

nvmlReturn_t nvmlDeviceGetMigMode(void *device, unsigned int *current, unsigned int *pending) {
    GPU_ENTER("nvmlDeviceGetMigMode");
    *current = g->n_migs > 0;
    *pending = g->n_migs > 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(void *device, unsigned int *count) {
    GPU_ENTER("nvmlDeviceGetMaxMigDeviceCount");
    *count = g->n_migs > 0 ? 7 : 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(void *device, unsigned int index, void **mig) {
    GPU_ENTER("nvmlDeviceGetMigDeviceHandleByIndex");
    if (index >= 7) return NVML_ERROR_INVALID_ARGUMENT;
    if (index >= (unsigned int)g->n_migs) return NVML_ERROR_NOT_FOUND;
    *mig = &g->migs[index];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetGpuInstanceId(void *device, unsigned int *id) {
    nvmlReturn_t r = enter_global("nvmlDeviceGetGpuInstanceId");
    if (r) return r;
    mig_t *m = as_mig(device);
    if (!m) return NVML_ERROR_NOT_SUPPORTED;
    *id = m->gi;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeInstanceId(void *device, unsigned int *id) {
    nvmlReturn_t r = enter_global("nvmlDeviceGetComputeInstanceId");
    if (r) return r;
    mig_t *m = as_mig(device);
    if (!m) return NVML_ERROR_NOT_SUPPORTED;
    *id = m->ci;
    return NVML_SUCCESS;
}

/* ---- events ---- */

typedef struct {
    gpu_t *devices[MAX_GPUS];
    int n;
} event_set_t;

nvmlReturn_t nvmlEventSetCreate(void **set) {
    nvmlReturn_t r = enter_global("nvmlEventSetCreate");
    if (r) return r;
    event_set_t *s = calloc(1, sizeof *s);
    if (!s) return NVML_ERROR_UNKNOWN;
    *set = s;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlEventSetFree(void *set) {
    free(set);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetSupportedEventTypes(void *device, unsigned long long *types) {
    GPU_ENTER("nvmlDeviceGetSupportedEventTypes");
    *types = 0x8 | 0x4 | 0x2; /* XID, double-bit ECC, single-bit ECC */
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceRegisterEvents(void *device, unsigned long long types, void *set) {
    GPU_ENTER("nvmlDeviceRegisterEvents");
    event_set_t *s = set;
    if (!s || !(types & 0x8)) return NVML_ERROR_INVALID_ARGUMENT;
    pthread_mutex_lock(&lock);
    if (s->n < MAX_GPUS) s->devices[s->n++] = g;
    pthread_mutex_unlock(&lock);
    return NVML_SUCCESS;
}

#ifndef FAKE_NVML_MISSING_SYMBOLS
nvmlReturn_t nvmlEventSetWait_v2(void *set, nvmlEventData_t *data, unsigned int timeout_ms) {
    nvmlReturn_t r = enter_global("nvmlEventSetWait_v2");
    if (r) return r;
    event_set_t *s = set;
    gpu_t *hit = NULL;
    int lost = 0;
    long long now_ms = ms_since_load();
    pthread_mutex_lock(&lock);
    for (int i = 0; i < s->n; i++) lost |= is_lost(s->devices[i]);
    for (int i = 0; i < s->n && !hit && !lost; i++) {
        gpu_t *g = s->devices[i];
        if (g->xid && !g->xid_delivered && now_ms >= g->xid_delay_ms) {
            g->xid_delivered = 1;
            hit = g;
        }
    }
    pthread_mutex_unlock(&lock);
    /* The pessimistic reading of NVML's documentation: while one GPU of the set is lost, every
     * wait on the set answers GPU_IS_LOST, and events of the other GPUs are not delivered. */
    if (lost) return NVML_ERROR_GPU_IS_LOST;
    if (hit) {
        memset(data, 0, sizeof *data);
        data->device = hit;
        data->eventType = 0x8;
        data->eventData = (unsigned long long)hit->xid;
        data->gpuInstanceId = 0xFFFFFFFF;
        data->computeInstanceId = 0xFFFFFFFF;
        return NVML_SUCCESS;
    }
    struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    return NVML_ERROR_TIMEOUT;
}
#endif

/* ---- GPM (Hopper+ performance metrics) ---- */

typedef struct {
    unsigned int version, isSupportedDevice;
} nvmlGpmSupport_t;

typedef struct {
    gpu_t *gpu;
} gpm_sample_t;

typedef struct {
    unsigned int metricId;
    nvmlReturn_t nvmlReturn;
    double value;
    struct {
        char *shortName, *longName, *unit;
    } metricInfo;
} nvmlGpmMetric_t;

typedef struct {
    unsigned int version, numMetrics;
    gpm_sample_t *sample1, *sample2;
    nvmlGpmMetric_t metrics[210];
} nvmlGpmMetricsGet_t;

nvmlReturn_t nvmlGpmQueryDeviceSupport(void *device, nvmlGpmSupport_t *support) {
    GPU_ENTER("nvmlGpmQueryDeviceSupport");
    if (support->version != 1) return NVML_ERROR_INVALID_ARGUMENT;
    support->isSupportedDevice = g->gpm[0] >= 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlGpmSampleAlloc(gpm_sample_t **sample) {
    nvmlReturn_t r = enter_global("nvmlGpmSampleAlloc");
    if (r) return r;
    *sample = calloc(1, sizeof **sample);
    return *sample ? NVML_SUCCESS : NVML_ERROR_UNKNOWN;
}

nvmlReturn_t nvmlGpmSampleFree(gpm_sample_t *sample) {
    free(sample);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlGpmSampleGet(void *device, gpm_sample_t *sample) {
    GPU_ENTER("nvmlGpmSampleGet");
    if (g->gpm[0] < 0) return NVML_ERROR_NOT_SUPPORTED;
    sample->gpu = g;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlGpmMigSampleGet(void *device, unsigned int gpu_instance_id, gpm_sample_t *sample) {
    GPU_ENTER("nvmlGpmMigSampleGet");
    if (g->gpm[0] < 0) return NVML_ERROR_NOT_SUPPORTED;
    for (int i = 0; i < g->n_migs; i++) {
        if (g->migs[i].gi == gpu_instance_id) {
            sample->gpu = g;
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t nvmlGpmMetricsGet(nvmlGpmMetricsGet_t *request) {
    nvmlReturn_t r = enter_global("nvmlGpmMetricsGet");
    if (r) return r;
    if (request->version != 1 || request->numMetrics > 210 || !request->sample1 || !request->sample2 ||
        !request->sample1->gpu || request->sample1->gpu != request->sample2->gpu)
        return NVML_ERROR_INVALID_ARGUMENT;
    gpu_t *g = request->sample2->gpu;
    static char name[] = "fake", unit[] = "%";
    for (unsigned int i = 0; i < request->numMetrics; i++) {
        nvmlGpmMetric_t *m = &request->metrics[i];
        int slot = -1;
        switch (m->metricId) {
        case 1: slot = 0; break;  /* GRAPHICS_UTIL */
        case 2: slot = 1; break;  /* SM_UTIL */
        case 3: slot = 2; break;  /* SM_OCCUPANCY */
        case 5: slot = 3; break;  /* ANY_TENSOR_UTIL */
        case 10: slot = 4; break; /* DRAM_BW_UTIL */
        case 20: slot = 5; break; /* PCIE_TX_PER_SEC */
        case 21: slot = 6; break; /* PCIE_RX_PER_SEC */
        }
        m->nvmlReturn = slot < 0 ? NVML_ERROR_NOT_SUPPORTED : NVML_SUCCESS;
        m->value = slot < 0 ? 0 : g->gpm[slot];
        m->metricInfo.shortName = name;
        m->metricInfo.longName = name;
        m->metricInfo.unit = unit;
    }
    return NVML_SUCCESS;
}
