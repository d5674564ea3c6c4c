/* plugin.cpp: TorchScript models through libtorch, behind the C functions of plugin.h.
 *
 * Built into libinferd_torch.so only when libtorch-dev is installed (see the Makefile); inferd
 * opens it with dlopen (torchscript.c). Three process-wide settings are made here, once:
 *
 * Memory. libtorch allocates every CPU tensor through c10's CPU allocator. init replaces it
 * with a counting one: each block carries a 64-byte header naming the meter of the module it
 * belongs to (the module loading or running on this thread when it was allocated), and the
 * meter forwards every allocation and free to the module's inferd memory account. So weights,
 * buffers and the activations of runs in progress are charged to their model version while
 * they exist, and the residency manager sees real numbers. A tensor that outlives its module
 * (a cache inside libtorch, say) keeps its meter alive by reference and is no longer charged.
 *
 * Threads. libtorch's at::set_num_threads is process-wide (it also resizes libtorch's
 * pthreadpool and clears oneDNN's cache), so it is never called. libtorch's intra-op
 * parallelism is OpenMP, and an OpenMP team size is per calling thread: each run sets it with
 * omp_set_num_threads on its own worker thread, as the ONNX engine does, after making libtorch
 * run its one-time per-thread initialisation (which would otherwise overwrite it). Inter-op
 * threads (used only by models that call torch.jit.fork) are set to 1 once at init: it cannot
 * change once a pool has started. OpenBLAS, which libtorch calls for Linear layers, has one
 * process-wide thread count (openblas_set_num_threads) and a fixed pool created when it loads;
 * a run sets it to its own thread count when it is the only TorchScript run in progress, and
 * to 1 when others are running, so OpenBLAS never adds threads beyond what the scheduler gave
 * the runs in progress.
 *
 * Page faults. libtorch allocates and frees every activation in every run. glibc returns large
 * freed blocks to the kernel (mmap above 128 KiB-32 MiB, heap trimming), so each run faults its
 * activations in again, at 10-20 us a page here: measured on the peers' small model at batch
 * 8 x 128 tokens, 355 ms a run against 78 ms with freed memory kept. So init sets glibc's
 * M_MMAP_THRESHOLD to its maximum (32 MiB) and M_TRIM_THRESHOLD to 2 GiB (the peers' "malloc
 * tuned" setting), unless MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ are set: the
 * process then keeps the largest activations each worker thread has needed in its malloc
 * arena, rather than returning them after each run.
 */
#include "backend/torchscript/plugin.h"

#include <ATen/Parallel.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <dlfcn.h>
#include <malloc.h>
#include <omp.h>
#include <torch/script.h>
#include <torch/version.h>

#include <atomic>
#include <climits>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

namespace {

inferd_torch_host g_host;

int fail(inferd_error *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int fail(inferd_error *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

/* libtorch's messages run to many lines (a TorchScript traceback, then the error); the client
 * needs the last one, "builtins.ValueError: ...". */
std::string last_line(const char *what) {
    std::string s(what ? what : "");
    while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
        s.pop_back();
    size_t nl = s.rfind('\n');
    return nl == std::string::npos ? s : s.substr(nl + 1);
}

// ---- memory ----------------------------------------------------------------------------

struct Meter {
    std::mutex mu;                // orders charges against the detach in destroy
    void *acct = nullptr;         // the model's account; NULL once the module is destroyed
    int64_t live = 0;             // bytes of its blocks not yet freed
    std::atomic<int64_t> refs{1}; // the module's reference, plus one per live block
};

thread_local Meter *tls_meter = nullptr;

/* Sets the meter new blocks on this thread are charged to, for one scope. */
class MeterScope {
  public:
    explicit MeterScope(Meter *m) : prev_(tls_meter) { tls_meter = m; }
    ~MeterScope() { tls_meter = prev_; }
    MeterScope(const MeterScope &) = delete;
    MeterScope &operator=(const MeterScope &) = delete;

  private:
    Meter *prev_;
};

void meter_add(Meter *m, int64_t delta) {
    std::lock_guard<std::mutex> g(m->mu);
    m->live += delta;
    if (m->acct)
        g_host.charge(m->acct, delta);
}

void meter_unref(Meter *m) {
    if (m->refs.fetch_sub(1, std::memory_order_acq_rel) == 1)
        delete m;
}

/* 64 bytes, so the data after it keeps c10's 64-byte alignment. */
struct alignas(64) BlockHeader {
    Meter *meter;
    size_t size;
};

void counted_free(void *data) {
    if (!data)
        return;
    auto *h = reinterpret_cast<BlockHeader *>(static_cast<char *>(data) - sizeof(BlockHeader));
    if (h->meter) {
        meter_add(h->meter, -static_cast<int64_t>(h->size));
        meter_unref(h->meter);
    }
    c10::free_cpu(h);
}

/* The data pointer is also the context, so raw_allocate and raw_deleter work as with c10's
 * own allocator. */
class CountingAllocator final : public c10::Allocator {
  public:
    c10::DataPtr allocate(size_t n) const override {
        c10::Device cpu(c10::DeviceType::CPU);
        if (n == 0)
            return {nullptr, nullptr, &counted_free, cpu};
        // alloc_cpu throws c10::Error when out of memory, as c10's allocator does.
        auto *h = static_cast<BlockHeader *>(c10::alloc_cpu(n + sizeof(BlockHeader)));
        Meter *m = tls_meter;
        h->meter = m;
        h->size = n;
        if (m) {
            m->refs.fetch_add(1, std::memory_order_relaxed);
            meter_add(m, static_cast<int64_t>(n));
        }
        void *data = h + 1;
        return {data, data, &counted_free, cpu};
    }
    c10::DeleterFnPtr raw_deleter() const override { return &counted_free; }
};

CountingAllocator g_allocator;

// ---- threads ---------------------------------------------------------------------------

using blas_set_fn = void (*)(int);
blas_set_fn g_blas_set = nullptr;
char g_blas_info[256] = "BLAS not inspected yet";
std::mutex g_blas_mu;
int g_blas_active = 0; // TorchScript runs in progress
int g_blas_now = -1;   // the count last given to OpenBLAS

void find_openblas() {
    // libtorch links OpenBLAS (directly, and as Debian's libblas.so.3), so it is loaded now.
    void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_NOLOAD);
    if (!h)
        h = dlopen("libblas.so.3", RTLD_NOW | RTLD_NOLOAD);
    if (h)
        g_blas_set = reinterpret_cast<blas_set_fn>(dlsym(h, "openblas_set_num_threads"));
    if (!g_blas_set) {
        snprintf(g_blas_info, sizeof g_blas_info,
                 "BLAS is not OpenBLAS: its threads are not controlled (the reference BLAS is "
                 "single-threaded)");
        return;
    }
    auto config = reinterpret_cast<char *(*)()>(dlsym(h, "openblas_get_config"));
    auto core = reinterpret_cast<char *(*)()>(dlsym(h, "openblas_get_corename"));
    auto pool = reinterpret_cast<int (*)()>(dlsym(h, "openblas_get_num_threads"));
    snprintf(g_blas_info, sizeof g_blas_info, "%s, core %s, pool of %d",
             config ? config() : "OpenBLAS", core ? core() : "?", pool ? pool() : -1);
}

/* The thread counts of one run, for its duration. */
class RunThreads {
  public:
    explicit RunThreads(int threads) {
        // The first parallel op on a thread runs at::init_num_threads, which sets the
        // thread's OpenMP team size to libtorch's default; make that happen now, not after
        // omp_set_num_threads.
        (void)at::get_num_threads();
        omp_set_num_threads(threads);
        std::lock_guard<std::mutex> g(g_blas_mu);
        int want = g_blas_active++ == 0 ? threads : 1;
        if (g_blas_set && want != g_blas_now) {
            g_blas_set(want);
            g_blas_now = want;
        }
    }
    ~RunThreads() {
        std::lock_guard<std::mutex> g(g_blas_mu);
        g_blas_active--;
    }
    RunThreads(const RunThreads &) = delete;
    RunThreads &operator=(const RunThreads &) = delete;
};

// ---- dtypes ----------------------------------------------------------------------------

bool to_torch(inferd_dtype t, c10::ScalarType *out) {
    switch (t) {
    case INFERD_DTYPE_F32:
        *out = c10::kFloat;
        return true;
    case INFERD_DTYPE_F64:
        *out = c10::kDouble;
        return true;
    case INFERD_DTYPE_F16:
        *out = c10::kHalf;
        return true;
    case INFERD_DTYPE_BF16:
        *out = c10::kBFloat16;
        return true;
    case INFERD_DTYPE_I64:
        *out = c10::kLong;
        return true;
    case INFERD_DTYPE_I32:
        *out = c10::kInt;
        return true;
    case INFERD_DTYPE_I16:
        *out = c10::kShort;
        return true;
    case INFERD_DTYPE_I8:
        *out = c10::kChar;
        return true;
    case INFERD_DTYPE_U8:
        *out = c10::kByte;
        return true;
    case INFERD_DTYPE_BOOL:
        *out = c10::kBool;
        return true;
    default:
        return false;
    }
}

inferd_dtype from_torch(c10::ScalarType t) {
    switch (t) {
    case c10::kFloat:
        return INFERD_DTYPE_F32;
    case c10::kDouble:
        return INFERD_DTYPE_F64;
    case c10::kHalf:
        return INFERD_DTYPE_F16;
    case c10::kBFloat16:
        return INFERD_DTYPE_BF16;
    case c10::kLong:
        return INFERD_DTYPE_I64;
    case c10::kInt:
        return INFERD_DTYPE_I32;
    case c10::kShort:
        return INFERD_DTYPE_I16;
    case c10::kChar:
        return INFERD_DTYPE_I8;
    case c10::kByte:
        return INFERD_DTYPE_U8;
    case c10::kBool:
        return INFERD_DTYPE_BOOL;
    default:
        return INFERD_DTYPE_INVALID;
    }
}

} // namespace

struct inferd_torch_module {
    torch::jit::Module mod;
    Meter *meter = nullptr;
    std::vector<inferd_torch_arg> args;
    std::string ret;
};

namespace {

int plugin_init(const inferd_torch_host *host, inferd_error *err) {
    g_host = *host;
    try {
        // Priority 1 wins over c10's default allocator (priority 0).
        c10::SetCPUAllocator(&g_allocator, 1);
        // At most one inter-op thread, and only for models that fork; may throw if something
        // already started the pool, which leaves its earlier setting.
        try {
            at::set_num_interop_threads(1);
        } catch (const c10::Error &) {
        }
        find_openblas();
        if (!getenv("MALLOC_MMAP_THRESHOLD_"))
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
        if (!getenv("MALLOC_TRIM_THRESHOLD_"))
            mallopt(M_TRIM_THRESHOLD, INT_MAX);
    } catch (const std::exception &e) {
        return fail(err, INFERD_EINTERNAL, "libtorch init failed: %s", last_line(e.what()).c_str());
    }
    return 0;
}

void module_free(inferd_torch_module *m) {
    Meter *meter = m->meter;
    {
        // The module's tensors are freed here and uncharged as they go.
        MeterScope scope(nullptr);
        delete m;
    }
    if (meter) {
        std::lock_guard<std::mutex> g(meter->mu);
        if (meter->acct && meter->live)
            g_host.charge(meter->acct, -meter->live);
        meter->acct = nullptr;
    }
    if (meter)
        meter_unref(meter);
}

int plugin_load(const char *path, void *acct, inferd_torch_module **out, inferd_error *err) {
    *out = nullptr;
    auto *m = new (std::nothrow) inferd_torch_module;
    if (!m)
        return fail(err, INFERD_EINTERNAL, "out of memory loading %s", path);
    m->meter = new (std::nothrow) Meter;
    if (!m->meter) {
        delete m;
        return fail(err, INFERD_EINTERNAL, "out of memory loading %s", path);
    }
    m->meter->acct = acct;
    int rc = 0;
    {
        MeterScope scope(m->meter);
        try {
            m->mod = torch::jit::load(path, c10::Device(c10::DeviceType::CPU));
            m->mod.eval();
            auto method = m->mod.find_method("forward");
            if (!method) {
                rc = fail(err, INFERD_EINVAL, "the TorchScript module has no forward method");
            } else {
                const c10::FunctionSchema &schema = method->function().getSchema();
                const auto &args = schema.arguments();
                for (size_t i = 1; i < args.size(); i++) { // 0 is self
                    inferd_torch_arg a{};
                    snprintf(a.name, sizeof a.name, "%s", args[i].name().c_str());
                    snprintf(a.type, sizeof a.type, "%s", args[i].type()->annotation_str().c_str());
                    a.has_default = args[i].default_value().has_value();
                    m->args.push_back(a);
                }
                const auto &rets = schema.returns();
                m->ret = rets.size() == 1 ? rets[0].type()->annotation_str() : "(several values)";
            }
        } catch (const c10::Error &e) {
            rc = fail(err, INFERD_EINVAL, "not a TorchScript file libtorch can load: %s",
                      last_line(e.what_without_backtrace()).c_str());
        } catch (const std::bad_alloc &) {
            rc = fail(err, INFERD_EINTERNAL, "out of memory loading %s", path);
        } catch (const std::exception &e) {
            rc = fail(err, INFERD_EINVAL, "not a TorchScript file libtorch can load: %s",
                      last_line(e.what()).c_str());
        }
    }
    if (rc < 0) {
        module_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

void plugin_destroy(inferd_torch_module *m) {
    if (m)
        module_free(m);
}

int plugin_arg_count(const inferd_torch_module *m) { return static_cast<int>(m->args.size()); }

const inferd_torch_arg *plugin_arg(const inferd_torch_module *m, int i) { return &m->args[i]; }

const char *plugin_return_type(const inferd_torch_module *m) { return m->ret.c_str(); }

void free_outputs(inferd_tensor *outputs, int n) {
    for (int j = 0; j < n; j++) {
        g_host.free(outputs[j].data);
        outputs[j].data = nullptr;
    }
}

int copy_output(const at::Tensor &t0, int j, inferd_tensor *o, inferd_error *err) {
    if (!t0.device().is_cpu())
        return fail(err, INFERD_EINVAL, "output %d is not on the CPU", j);
    inferd_dtype dt = from_torch(t0.scalar_type());
    if (dt == INFERD_DTYPE_INVALID)
        return fail(err, INFERD_EUNSUPPORTED, "output %d has dtype %s, which inferd does not take",
                    j, c10::toString(t0.scalar_type()));
    if (t0.dim() > INFERD_MAX_RANK)
        return fail(err, INFERD_EUNSUPPORTED, "output %d has rank %lld, more than %d", j,
                    static_cast<long long>(t0.dim()), INFERD_MAX_RANK);
    at::Tensor t = t0.contiguous();
    size_t nbytes = t.nbytes();
    void *buf = g_host.alloc(nbytes);
    if (!buf)
        return fail(err, INFERD_EINTERNAL, "out of memory for output %d", j);
    if (nbytes)
        memcpy(buf, t.data_ptr(), nbytes);
    memset(o, 0, sizeof *o);
    o->dtype = dt;
    o->rank = static_cast<int>(t.dim());
    for (int k = 0; k < o->rank; k++)
        o->dims[k] = t.size(k);
    o->data = buf;
    o->nbytes = nbytes;
    return 0;
}

int plugin_run(inferd_torch_module *m, const inferd_tensor *inputs, int n_inputs,
               inferd_tensor *outputs, int max_outputs, int *n_out, int threads,
               inferd_error *err) {
    *n_out = 0;
    MeterScope scope(m->meter);
    RunThreads rt(threads < 1 ? 1 : threads);
    int done = 0;
    int rc = 0;
    try {
        c10::InferenceMode guard;
        std::vector<c10::IValue> args;
        args.reserve(static_cast<size_t>(n_inputs));
        for (int i = 0; i < n_inputs; i++) {
            const inferd_tensor *t = &inputs[i];
            c10::ScalarType st;
            if (!to_torch(t->dtype, &st))
                return fail(err, INFERD_EUNSUPPORTED, "input %d: dtype %d has no torch type", i,
                            static_cast<int>(t->dtype));
            std::vector<int64_t> dims(t->dims, t->dims + t->rank);
            args.emplace_back(torch::from_blob(t->data, dims, torch::TensorOptions().dtype(st)));
        }
        c10::IValue result = m->mod.forward(std::move(args));
        std::vector<at::Tensor> outs;
        if (result.isTensor()) {
            outs.push_back(result.toTensor());
        } else if (result.isTuple()) {
            for (const auto &e : result.toTupleRef().elements()) {
                if (!e.isTensor())
                    return fail(err, INFERD_EUNSUPPORTED,
                                "forward returned a tuple holding a %s; inferd takes a Tensor or "
                                "a tuple of Tensors",
                                e.tagKind().c_str());
                outs.push_back(e.toTensor());
            }
        } else {
            return fail(err, INFERD_EUNSUPPORTED,
                        "forward returned a %s; inferd takes a Tensor or a tuple of Tensors",
                        result.tagKind().c_str());
        }
        if (static_cast<int>(outs.size()) > max_outputs)
            return fail(err, INFERD_EINVAL, "forward returned %zu tensors, %d expected",
                        outs.size(), max_outputs);
        for (; done < static_cast<int>(outs.size()); done++)
            if ((rc = copy_output(outs[static_cast<size_t>(done)], done, &outputs[done], err)) < 0)
                break;
    } catch (const c10::Error &e) {
        rc = fail(err, INFERD_EINVAL, "the TorchScript model raised: %s",
                  last_line(e.what_without_backtrace()).c_str());
    } catch (const std::bad_alloc &) {
        rc = fail(err, INFERD_EINTERNAL, "out of memory in the TorchScript run");
    } catch (const std::exception &e) {
        rc = fail(err, INFERD_EINVAL, "the TorchScript model raised: %s",
                  last_line(e.what()).c_str());
    }
    if (rc < 0) {
        free_outputs(outputs, done);
        return rc;
    }
    *n_out = done;
    return 0;
}

int64_t plugin_memory(const inferd_torch_module *m) {
    std::lock_guard<std::mutex> g(m->meter->mu);
    return m->meter->live;
}

const char *plugin_blas_info() { return g_blas_info; }

const inferd_torch_plugin g_plugin = {
    INFERD_TORCH_ABI_VERSION, TORCH_VERSION, plugin_init,        plugin_load, plugin_destroy,
    plugin_arg_count,         plugin_arg,    plugin_return_type, plugin_run,  plugin_memory,
    plugin_blas_info,
};

} // namespace

extern "C" __attribute__((visibility("default"))) const inferd_torch_plugin *
inferd_torch_plugin_get(int abi_version) {
    return abi_version == INFERD_TORCH_ABI_VERSION ? &g_plugin : nullptr;
}
