/* train.c - the training and evaluation loops (the seed's train_ch6):
 * shuffled batches from a background loader, one compiled step per batch,
 * the seed's line per epoch, metrics, a plot and an atomic checkpoint after
 * every epoch. */
#include "runtime.h"
#include "checkpoint.h"
#include "data.h"
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

int rt_evaluate(RtSession *s, const char *data_dir, int resize, double *loss, double *acc, Diag *d) {
    char err[512];
    RtDataset test;
    if (rt_dataset_load(&test, data_dir, 0, err, sizeof err)) return diag_error_noloc(d, "%s", err);
    int rc = 0;
    int64_t B = s->batch, total = 0, correct = 0;
    double lsum = 0;
    RtLoader *l = rt_loader_new(&test, (int)B, resize, 0, 0, 0);
    float *img = ir_xmalloc(sizeof(float) * (size_t)(B * resize * resize));
    int32_t *lab = ir_xmalloc(sizeof(int32_t) * (size_t)B);
    if (!l) rc = diag_error_noloc(d, "cannot start the data loader");
    if (!rc) rt_loader_begin_epoch(l, 0);
    int n;
    while (!rc && (n = rt_loader_next(l, img, lab)) > 0) {
        double ls;
        int64_t ok;
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

int rt_train(RtSession *s, const RtTrainOptions *o, Diag *d) {
    char err[512], line[256];
    if (!s->has_train) return diag_error_noloc(d, "internal error: session has no training program");
    int resize = input_size(s);
    int first_epoch = 0, epochs = o->epochs;
    uint64_t step = 0, seed = o->seed;
    if (o->resume && !o->checkpoint) return diag_error_noloc(d, "--resume needs --checkpoint PATH");
    /* before any work: the checkpoint can be written, and is ours alone */
    int lock = -1;
    if (o->checkpoint && (lock = rt_checkpoint_claim(o->checkpoint, err, sizeof err)) < 0)
        return diag_error_noloc(d, "%s", err);
    if (o->resume) {
        if (rt_checkpoint_load(s, o->checkpoint, &first_epoch, &step, &seed, d)) goto unlock;
        if (first_epoch > epochs) {
            diag_error_noloc(d, "checkpoint %s is after epoch %d, beyond this run's %d epochs; nothing to train "
                             "(give --epochs %d or more to go on)", o->checkpoint, first_epoch, epochs, first_epoch + 1);
            goto unlock;
        }
        if (first_epoch == epochs) {
            if (!o->quiet) fprintf(stderr, "%s: already trained %d of %d epochs; nothing to do\n", o->checkpoint,
                                   first_epoch, epochs);
            rt_checkpoint_release(lock);
            return 0;
        }
        if (!o->quiet) fprintf(stderr, "resuming from %s after epoch %d (step %llu)\n", o->checkpoint, first_epoch,
                               (unsigned long long)step);
    } else {
        rt_model_init(&s->model, &s->train, seed);
    }
    RtDataset train;
    if (rt_dataset_load(&train, o->data_dir, 1, err, sizeof err)) {
        diag_error_noloc(d, "%s", err);
        goto unlock;
    }
    int64_t B = s->batch;
    if (B > train.n) {
        diag_error_noloc(d, "batch %lld is larger than the training set (%lld images in %s); give --batch %lld or less",
                         (long long)B, (long long)train.n, o->data_dir ? o->data_dir : RT_DATA_DEFAULT_DIR,
                         (long long)train.n);
        rt_dataset_free(&train);
        goto unlock;
    }
    RtLoader *l = rt_loader_new(&train, (int)B, resize, 1, 1, seed);
    if (!l) {
        rt_dataset_free(&train);
        diag_error_noloc(d, "cannot start the data loader (out of memory?)");
        goto unlock;
    }
    float *img = ir_xmalloc(sizeof(float) * (size_t)(B * resize * resize));
    int32_t *lab = ir_xmalloc(sizeof(int32_t) * (size_t)B);
    RtMetrics *m = NULL;
    struct stat mst;
    if (o->metrics && stat(o->metrics, &mst) == 0 && !S_ISREG(mst.st_mode)) {
        /* opening a FIFO to append would wait for a reader */
        diag_error_noloc(d, "metrics file %s: not a regular file", o->metrics);
        goto fail;
    }
    if (o->metrics && !(m = rt_metrics_open(o->metrics, o->resume, err, sizeof err))) {
        diag_error_noloc(d, "%s", err);
        goto fail;
    }
    double *hl = ir_xcalloc((size_t)epochs + 1, sizeof(double));
    double *htr = ir_xcalloc((size_t)epochs + 1, sizeof(double));
    double *hte = ir_xcalloc((size_t)epochs + 1, sizeof(double));
    int plot_from = first_epoch;
    if (o->resume && first_epoch <= epochs && history(o->metrics, first_epoch, hl, htr, hte) == first_epoch)
        plot_from = 0;
    int rc = 0;
    for (int e = first_epoch; e < epochs && !rc; e++) {
        int64_t nb = rt_loader_batches(l);
        if (o->max_steps > 0 && nb > o->max_steps) nb = o->max_steps;
        RtProgress pr;
        snprintf(line, sizeof line, "epoch %d/%d", e + 1, epochs);
        if (!o->quiet) rt_progress_begin(&pr, stderr, line, nb);
        rt_loader_begin_epoch(l, e);
        double t0 = now(), lsum = 0;
        int64_t seen = 0, correct = 0;
        for (int64_t b = 0; b < nb; b++) {
            int n = rt_loader_next(l, img, lab);
            if (n <= 0) break;
            double loss;
            int64_t ok;
            rt_session_set_batch(s, img, lab);
            if (rt_session_train_step(s, o->lr, seed, step, &loss, n, &ok)) {
                rc = diag_error_noloc(d, "training step failed at epoch %d, step %lld", e + 1, (long long)b + 1);
                break;
            }
            if (!isfinite(loss)) {
                if (!o->quiet) rt_progress_end(&pr);
                rc = diag_error_noloc(d, "the loss is %s at epoch %d, step %lld of %lld; stopping%s%s%s",
                                      isnan(loss) ? "NaN" : "infinite", e + 1, (long long)b + 1, (long long)nb,
                                      o->checkpoint ? " (the last good checkpoint, " : "",
                                      o->checkpoint ? o->checkpoint : "", o->checkpoint ? ", is intact)" : "");
                fprintf(d->out, "hint: lower the learning rate (--lr %g now)\n", o->lr);
                break;
            }
            step++;
            lsum += loss * n;
            correct += ok;
            seen += n;
            if (!o->quiet) {
                char sfx[64];
                snprintf(sfx, sizeof sfx, "loss %.3f, acc %.3f", lsum / (double)seen, (double)correct / (double)seen);
                rt_progress_update(&pr, b + 1, sfx);
            }
        }
        if (rc) break;
        double dt = now() - t0;
        if (!o->quiet) rt_progress_end(&pr);
        double tl, ta;
        if (rt_evaluate(s, o->data_dir, resize, &tl, &ta, d)) { rc = -1; break; }
        double loss = seen ? lsum / (double)seen : 0, tra = seen ? (double)correct / (double)seen : 0;
        double eps = dt > 0 ? (double)seen / dt : 0;
        rt_format_epoch(line, sizeof line, e + 1, epochs, loss, tra, ta, eps);
        printf("%s\n", line);
        fflush(stdout);
        hl[e] = loss, htr[e] = tra, hte[e] = ta;
        if (m && rt_metrics_epoch(m, e + 1, epochs, loss, tra, ta, eps, err, sizeof err)) {
            rc = diag_error_noloc(d, "%s", err);
            break;
        }
        if (o->checkpoint && rt_checkpoint_save(s, o->checkpoint, e + 1, step, seed, d)) { rc = -1; break; }
        if (o->plot && rt_plot_svg(o->plot, hl + plot_from, htr + plot_from, hte + plot_from, e + 1 - plot_from,
                                   epochs - plot_from, o->title, err, sizeof err)) {
            rc = diag_error_noloc(d, "%s", err);
            break;
        }
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
