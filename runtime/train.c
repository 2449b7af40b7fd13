/* train.c - the training and evaluation loops (the seed's train_ch6):
 * shuffled batches from a background loader, one compiled step per batch,
 * the seed's line per epoch, metrics, a plot and an atomic checkpoint after
 * every epoch. */
#include "runtime.h"
#include "checkpoint.h"
#include "data.h"
#include "dist.h"
#include "../base/infile.h"
#include "metrics.h"
#include "progress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int input_size(const RtSession *s) {
    const IrType *t = ir_type(&s->eval.g, s->eval.g.input);
    return (int)t->d[2];
}

/* Data parallel: each rank evaluates its part of every batch, with rank
 * 0's running statistics (each rank's own moved with its own batches, as
 * in PyTorch's DDP, which copies rank 0's to the others every step), and
 * the sums are summed over the ranks. */
int rt_evaluate(RtSession *s, const char *data_dir, int resize, double *loss, double *acc, Diag *d) {
    char err[512];
    RtDataset test;
    if (rt_dataset_load(&test, data_dir, 0, err, sizeof err)) return diag_error_noloc(d, "%s", err);
    int rc = s->dist ? rt_session_bcast(s, 0, 1, d) : 0;
    int64_t B = s->batch, total = 0, correct = 0;
    double lsum = 0;
    RtLoader *l = s->dist ? rt_loader_new_part(&test, (int)B, resize, 0, 0, 0, rt_dist_rank(), rt_dist_size())
                          : rt_loader_new(&test, (int)B, resize, 0, 0, 0);
    float *img = ir_xmalloc(sizeof(float) * (size_t)(B * resize * resize));
    int32_t *lab = ir_xmalloc(sizeof(int32_t) * (size_t)B);
    if (!l) rc = diag_error_noloc(d, "cannot start the data loader");
    if (!rc) rt_loader_begin_epoch(l, 0);
    for (int64_t b = 0, nb = rc ? 0 : rt_loader_batches(l); b < nb && !rc; b++) {
        double ls;
        int64_t ok;
        int n = rt_loader_next(l, img, lab);
        if (n <= 0) continue; /* a part with no images in the last batch */
        rt_session_set_batch(s, img, lab);
        if (rt_session_eval(s, n, &ls, &ok)) rc = diag_error_noloc(d, "evaluation failed");
        lsum += ls;
        correct += ok;
        total += n;
    }
    rt_loader_free(l);
    rt_dataset_free(&test);
    free(img);
    free(lab);
    if (!rc && s->dist) {
        double sums[3] = {lsum, (double)correct, (double)total};
        if (rt_dist_sum_f64(sums, 3)) rc = diag_error_noloc(d, "could not sum the test results over the ranks");
        lsum = sums[0], correct = (int64_t)sums[1], total = (int64_t)sums[2];
    }
    if (!rc) {
        *loss = total ? lsum / (double)total : 0;
        *acc = total ? (double)correct / (double)total : 0;
    }
    return rc;
}

/* On --resume, the curves of the epochs before it, from the metrics file
 * (lines {"epoch":E,...,"loss":L,"train_acc":A,"test_acc":T,...}); the plot
 * then shows the whole run.  Returns the first epoch it could not fill. */
static int history(const char *path, int upto, double *loss, double *tra, double *tea) {
    FILE *f = path ? rt_fopen_input(path, 0, NULL, NULL, 0) : NULL;
    int have = 0;
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        const char *e = strstr(line, "\"epoch\":"), *l = strstr(line, "\"loss\":");
        const char *a = strstr(line, "\"train_acc\":"), *t = strstr(line, "\"test_acc\":");
        if (!e || !l || !a || !t) continue;
        int ep = atoi(e + 8);
        if (ep < 1 || ep > upto) continue;
        loss[ep - 1] = atof(l + 7), tra[ep - 1] = atof(a + 12), tea[ep - 1] = atof(t + 11);
        if (ep == have + 1) have = ep;
    }
    if (f) fclose(f);
    return have;
}

/* Data parallel: rank 0's outcome of something only it did (0 or -1) on
 * every rank. */
static int lead_rc(const RtSession *s, int rc) {
    if (!s->dist) return rc;
    int64_t v = rc;
    return rt_dist_bcast(&v, sizeof v) ? -1 : (int)v;
}

int rt_train(RtSession *s, const RtTrainOptions *o, Diag *d) {
    char err[512], line[256];
    if (!s->has_train) return diag_error_noloc(d, "internal error: session has no training program");
    int resize = input_size(s);
    int first_epoch = 0, epochs = o->epochs;
    uint64_t step = 0, seed = o->seed;
    /* data parallel: rank 0 alone prints, checkpoints and writes metrics */
    int ranks = s->dist ? rt_dist_size() : 1, lead = !s->dist || rt_dist_rank() == 0;
    int quiet = o->quiet || !lead;
    if (o->resume && !o->checkpoint) return lead ? diag_error_noloc(d, "--resume needs --checkpoint PATH") : -1;
    /* before any work: the checkpoint can be written, and is ours alone */
    int lock = -1, rc0 = 0;
    if (lead && o->checkpoint && (lock = rt_checkpoint_claim(o->checkpoint, err, sizeof err)) < 0)
        rc0 = diag_error_noloc(d, "%s", err);
    if (lead_rc(s, rc0)) return -1;
    if (o->resume) {
        int64_t meta[3] = {0, 0, 0};
        if (lead) {
            rc0 = rt_checkpoint_load(s, o->checkpoint, &first_epoch, &step, &seed, d);
            meta[0] = first_epoch, meta[1] = (int64_t)step, meta[2] = (int64_t)seed;
        }
        if (lead_rc(s, rc0) || (s->dist && rt_dist_bcast(meta, sizeof meta))) goto unlock;
        first_epoch = (int)meta[0], step = (uint64_t)meta[1], seed = (uint64_t)meta[2];
        if (first_epoch > epochs) {
            if (lead)
                diag_error_noloc(d, "checkpoint %s is after epoch %d, beyond this run's %d epochs; nothing to train "
                                 "(give --epochs %d or more to go on)", o->checkpoint, first_epoch, epochs,
                                 first_epoch + 1);
            goto unlock;
        }
        if (first_epoch == epochs) {
            if (!quiet) fprintf(stderr, "%s: already trained %d of %d epochs; nothing to do\n", o->checkpoint,
                                first_epoch, epochs);
            rt_checkpoint_release(lock);
            return 0;
        }
        if (!quiet) fprintf(stderr, "resuming from %s after epoch %d (step %llu)\n", o->checkpoint, first_epoch,
                            (unsigned long long)step);
    } else {
        rt_model_init(&s->model, &s->train, seed);
    }
    /* every rank starts from rank 0's weights (the same by construction:
     * this makes sure, as DDP does) */
    if (s->dist && rt_session_bcast(s, 1, 1, d)) goto unlock;
    RtDataset train;
    if (rt_dataset_load(&train, o->data_dir, 1, err, sizeof err)) {
        diag_error_noloc(d, "%s", err);
        goto unlock;
    }
    int64_t B = s->batch * ranks; /* the whole batch: s->batch on each rank */
    if (B > train.n) {
        diag_error_noloc(d, "batch %lld is larger than the training set (%lld images in %s); give --batch %lld or less",
                         (long long)B, (long long)train.n, o->data_dir ? o->data_dir : RT_DATA_DEFAULT_DIR,
                         (long long)train.n);
        rt_dataset_free(&train);
        goto unlock;
    }
    RtLoader *l = s->dist ? rt_loader_new_part(&train, (int)s->batch, resize, 1, 1, seed, rt_dist_rank(), ranks)
                          : rt_loader_new(&train, (int)B, resize, 1, 1, seed);
    if (!l) {
        rt_dataset_free(&train);
        diag_error_noloc(d, "cannot start the data loader (out of memory?)");
        goto unlock;
    }
    float *img = ir_xmalloc(sizeof(float) * (size_t)(s->batch * resize * resize));
    int32_t *lab = ir_xmalloc(sizeof(int32_t) * (size_t)s->batch);
    RtMetrics *m = NULL;
    struct stat mst;
    if (lead && o->metrics && stat(o->metrics, &mst) == 0 && !S_ISREG(mst.st_mode)) {
        /* opening a FIFO to append would wait for a reader */
        rc0 = diag_error_noloc(d, "metrics file %s: not a regular file", o->metrics);
    } else if (lead && o->metrics && !(m = rt_metrics_open(o->metrics, o->resume, err, sizeof err))) {
        rc0 = diag_error_noloc(d, "%s", err);
    }
    if (lead_rc(s, rc0)) goto fail;
    const char *plot = lead ? o->plot : NULL;
    double *hl = ir_xcalloc((size_t)epochs + 1, sizeof(double));
    double *htr = ir_xcalloc((size_t)epochs + 1, sizeof(double));
    double *hte = ir_xcalloc((size_t)epochs + 1, sizeof(double));
    int plot_from = first_epoch;
    if (lead && o->resume && first_epoch <= epochs && history(o->metrics, first_epoch, hl, htr, hte) == first_epoch)
        plot_from = 0;
    int rc = 0;
    for (int e = first_epoch; e < epochs && !rc; e++) {
        int64_t nb = rt_loader_batches(l);
        if (o->max_steps > 0 && nb > o->max_steps) nb = o->max_steps;
        RtProgress pr;
        snprintf(line, sizeof line, "epoch %d/%d", e + 1, epochs);
        if (!quiet) rt_progress_begin(&pr, stderr, line, nb);
        rt_loader_begin_epoch(l, e);
        double t0 = now(), lsum = 0;
        int64_t seen = 0, correct = 0;
        /* the next batch is read while the step runs: on a device backend
         * it goes up beside the step (rt_session_stage_batch) */
        int n = rt_loader_next(l, img, lab), staged = 0;
        for (int64_t b = 0; b < nb && n > 0; b++) {
            double loss;
            int64_t ok;
            if (!staged) rt_session_set_batch(s, img, lab);
            int cur = n, fail = rt_session_train_begin(s, o->lr, seed, step), ended = fail;
            staged = 0;
            n = 0;
            if (!fail && b + 1 < nb && (n = rt_loader_next(l, img, lab)) > 0 && rt_session_can_stage(s)) {
                fail = rt_session_stage_batch(s, img, lab);
                staged = !fail;
            }
            if (!ended && rt_session_train_end(s, &loss, cur, &ok)) fail = 1;
            if (fail) {
                rc = diag_error_noloc(d, "training step failed at epoch %d, step %lld", e + 1, (long long)b + 1);
                break;
            }
            if (!isfinite(loss)) { /* (data parallel: the same loss on every rank) */
                if (!lead) {
                    rc = -1;
                    break;
                }
                if (!quiet) rt_progress_end(&pr);
                rc = diag_error_noloc(d, "the loss is %s at epoch %d, step %lld of %lld; stopping%s%s%s",
                                      isnan(loss) ? "NaN" : "infinite", e + 1, (long long)b + 1, (long long)nb,
                                      o->checkpoint ? " (the last good checkpoint, " : "",
                                      o->checkpoint ? o->checkpoint : "", o->checkpoint ? ", is intact)" : "");
                fprintf(d->out, "hint: lower the learning rate (--lr %g now)\n", o->lr);
                break;
            }
            step++;
            cur *= ranks; /* data parallel: loss and ok are over every rank's rows */
            lsum += loss * cur;
            correct += ok;
            seen += cur;
            if (!quiet) {
                char sfx[64];
                snprintf(sfx, sizeof sfx, "loss %.3f, acc %.3f", lsum / (double)seen, (double)correct / (double)seen);
                rt_progress_update(&pr, b + 1, sfx);
            }
        }
        if (rc) break;
        double dt = now() - t0;
        if (!quiet) rt_progress_end(&pr);
        double tl, ta;
        if (rt_evaluate(s, o->data_dir, resize, &tl, &ta, d)) { rc = -1; break; }
        double loss = seen ? lsum / (double)seen : 0, tra = seen ? (double)correct / (double)seen : 0;
        double eps = dt > 0 ? (double)seen / dt : 0;
        rt_format_epoch(line, sizeof line, e + 1, epochs, loss, tra, ta, eps);
        if (lead) printf("%s\n", line);
        fflush(stdout);
        hl[e] = loss, htr[e] = tra, hte[e] = ta;
        if (m && rt_metrics_epoch(m, e + 1, epochs, loss, tra, ta, eps, err, sizeof err))
            rc = diag_error_noloc(d, "%s", err);
        if (!rc && lead && o->checkpoint && rt_checkpoint_save(s, o->checkpoint, e + 1, step, seed, d)) rc = -1;
        if (!rc && plot && rt_plot_svg(plot, hl + plot_from, htr + plot_from, hte + plot_from, e + 1 - plot_from,
                                       epochs - plot_from, o->title, err, sizeof err))
            rc = diag_error_noloc(d, "%s", err);
        if (lead_rc(s, rc)) rc = -1;
    }
    free(hl), free(htr), free(hte);
    if (m) rt_metrics_close(m);
    rt_loader_free(l);
    rt_dataset_free(&train);
    free(img), free(lab);
    rt_checkpoint_release(lock);
    return rc;
fail:
    rt_loader_free(l);
    rt_dataset_free(&train);
    free(img), free(lab);
unlock:
    rt_checkpoint_release(lock);
    return -1;
}
