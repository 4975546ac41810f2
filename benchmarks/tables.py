"""Render the benchmark JSON results in benchmarks/results/ as the Markdown tables quoted in BENCHMARKS.md.

    python benchmarks/tables.py io        # prints the I/O table
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _ms(row: dict, reader: str) -> str:
    r = row.get(reader, {})
    return "error" if "error" in r else f"{r['median_s'] * 1000:.1f}"


def _mib(row: dict, reader: str) -> str:
    r = row.get(reader, {})
    return "" if "error" in r else f"{r['peak_rss_added_mib']:.1f}"


def io_table(data: dict) -> str:
    lines = [
        "| input | medimg ms | SimpleITK ms | nibabel ms | time ratio vs SimpleITK | time ratio vs nibabel "
        "| medimg peak MiB | SimpleITK peak MiB | nibabel peak MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in data["rows"]:
        has_nib = "nibabel" in row
        lines.append(
            f"| {row['kind']}: {row['input']} | {_ms(row, 'medimg')} | {_ms(row, 'simpleitk')} | "
            f"{_ms(row, 'nibabel') if has_nib else ''} | {row.get('time_ratio_vs_simpleitk', '')} | "
            f"{row.get('time_ratio_vs_nibabel', '')} | {_mib(row, 'medimg')} | {_mib(row, 'simpleitk')} | "
            f"{_mib(row, 'nibabel') if has_nib else ''} |"
        )
    return "\n".join(lines)


def metrics_table(data: dict) -> str:
    lines = [
        "| input | medimg HD95 ms | MONAI HD95 ms | medpy HD95 ms | HD95 ratio vs MONAI | medimg NSD ms "
        "| MONAI NSD ms | NSD ratio vs MONAI | values agree |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in data["results"]:
        lines.append(
            f"| {r['input']} | {r['medimg_hd95_s'] * 1000:.1f} | {r['monai_hd95_s'] * 1000:.1f} | "
            f"{r['medpy_hd95_s'] * 1000:.1f} | {r['ratio_hd95_vs_monai']:.2f} | {r['medimg_nsd_s'] * 1000:.1f} | "
            f"{r['monai_nsd_s'] * 1000:.1f} | {r['ratio_nsd_vs_monai']:.2f} | {'yes' if r['agree'] else 'NO'} |"
        )
    lines.append(f"\nGeometric mean of the time ratios vs MONAI: HD95 {data['geomean_ratio_hd95_vs_monai']:.2f}, "
                 f"NSD {data['geomean_ratio_nsd_vs_monai']:.2f}.")
    return "\n".join(lines)


def classical_table(data: dict) -> str:
    """Classical baselines (benchmarks/classical.py): nuclei per method x type, HC18, hippocampus, speed ratios."""
    out = []
    nuc = data["nuclei"]
    methods = {"otsu": "Otsu + watershed", "fcm": "FCM (2) + watershed", "chan_vese": "Chan-Vese + watershed"}
    out += [f"Nuclei (DSB 2018 stage-1 train, {nuc['subset']}: {nuc['n_images']} images); means over images.", "",
            "| method | image type | images | Dice | F1@0.5 | DSB mAP 0.5:0.95 | pooled F1@0.5 |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for key, label in methods.items():
        for group, s in nuc["summary"].items():
            m = s[key]
            out.append(f"| {label} | {group} | {s['n_images']} | {m['dice']:.3f} | {m['f1_50']:.3f} | "
                       f"{m['dsb_map']:.3f} | {m['f1_50_pooled']:.3f} |")
    hc = data["hc18"]
    out += ["", f"Fetal head HC18 training set, {hc['split']}: {hc['n_images']} images of {hc['n_fetuses']} "
            "fetuses.", "",
            "| method | Dice mean | Dice median | abs HC diff mean (mm) | median (mm) | 90th pct (mm) "
            "| within 5 mm | no fit | Dice < 0.5 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| skull echo + RANSAC ellipse | {hc['dice_mean']:.3f} | {hc['dice_median']:.3f} | "
            f"{hc['hc_abs_diff_mm_mean']:.2f} | {hc['hc_abs_diff_mm_median']:.2f} | {hc['hc_abs_diff_mm_p90']:.2f} | "
            f"{hc['hc_within_5mm']:.1%} | {hc['failures_no_fit']} | {hc['gross_errors_dice_below_0_5']} |"]
    hip = data["hippocampus"]
    out += ["", f"Hippocampus (MSD Task04, {hip['subset']}: {hip['n_cases']} cases), Dice vs label > 0.", "",
            "| method | mean | median | min | max |", "|---|---:|---:|---:|---:|"]
    for key, label in (("fcm_3_clusters_best_cluster", "FCM (3), best-matching cluster"),
                       ("confidence_connected_gt_seed", "confidence connected, seed from the reference")):
        s = hip[key]
        out.append(f"| {label} | {s['mean']:.3f} | {s['median']:.3f} | {s['min']:.3f} | {s['max']:.3f} |")
    sp = data.get("speed")
    if sp:
        out += ["", f"Speed (median of {sp['repeats']} runs; ratio = medimg / peer, < 1 = medimg faster).", "",
                "| operation | input | medimg s | peer | peer s | ratio |", "|---|---|---:|---|---:|---:|"]
        for r in sp["fcm"]:
            op = f"FCM 3 clusters, {r['iterations']} iterations"
            out.append(f"| {op} | {r['input']} | {r['medimg_s']:.3f} | numpy voxel-wise | {r['numpy_s']:.3f} | "
                       f"{r['ratio_vs_numpy']:.3f} |")
            if "skfuzzy_s" in r:
                out.append(f"| {op} | {r['input']} | {r['medimg_s']:.3f} | scikit-fuzzy cmeans | "
                           f"{r['skfuzzy_s']:.3f} | {r['ratio_vs_skfuzzy']:.4f} |")
        w = sp["watershed"]
        out.append(f"| watershed, given markers | {w['images']} nuclei reference masks | "
                   f"{w['medimg_given_markers_s']:.3f} | skimage watershed + EDT | {w['skimage_s']:.3f} | "
                   f"{w['ratio_vs_skimage']:.3f} |")
        out += ["", "| graph cut (PyMaxflow, 6-neighbourhood) | voxels | seconds | Mvoxel/s | Dice WM |",
                "|---|---:|---:|---:|---:|"]
        for r in sp["graph_cut"]:
            out.append(f"| {r['input']} | {r['voxels']} | {r['seconds']:.2f} | {r['voxels_per_s'] / 1e6:.2f} | "
                       f"{r['dice_white_matter']:.3f} |")
    return "\n".join(out)


def segmentation_table(data: dict) -> str:
    t = data["training"]
    lines = [
        f"Fold {data['fold']}: {t['n_train']} training cases, {data['n_val_cases']} held-out validation cases; "
        f"{t['iterations']} iterations in {t['training_minutes']} min of training ({t['stop_reason']}); "
        f"TTA {'on' if data['tta'] else 'off'}.",
        "",
        "| class | Dice mean +- std | Dice median | Dice, largest component | HD95 mm mean +- std "
        "| nnU-Net 3d_fullres 5-fold CV Dice |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, d in data["dice"].items():
        h = data["hd95_mm"][name]
        lcc = data.get("dice_largest_component", {}).get(name, {})
        anchor = data.get("anchor_nnunet_3d_fullres_5fold_dice", {}).get(name, "")
        lines.append(f"| {name} | {d['mean']:.4f} +- {d['std']:.4f} | {d['median']:.4f} | "
                     f"{lcc.get('mean', float('nan')):.4f} | {h['mean']:.2f} +- {h['std']:.2f} | {anchor} |")
    if data.get("dice_vs_minutes"):
        lines += ["", "| training minutes | iterations | mean Dice (12 validation cases, plan grid) |",
                  "|---:|---:|---:|"]
        lines += [f"| {c['minutes']:.1f} | {c['iteration']} | {c['mean_dice']:.4f} |" for c in data["dice_vs_minutes"]]
    p = data["predict_seconds_per_case"]
    lines.append(f"\nPrediction (full path, input grid): {p['median']:.2f} s per case (median).")
    return "\n".join(lines)


def _f(v, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _model_rows(models: dict) -> list[str]:
    lines = ["| model | network | folds | train min | AUC (macro) | ACC | balanced ACC | ECE before -> after "
             "| uncertainty AUROC (entropy / TTA MI) | Grad-CAM rand. Spearman: head / all layers "
             "| deletion AUC Grad-CAM / random | images/s (network, bf16) |",
             "|---|---|---|---:|---:|---:|---:|---|---|---:|---|---:|"]
    for name, r in models.items():
        e = r.get("explanation", {})
        minutes = sum(t["training_minutes"] or 0 for t in r["training"])
        unc = f"{_f(r.get('uncertainty_auroc'))} / {_f(r.get('tta_uncertainty_auroc_mutual_information'))}"
        rnd = f"{_f(e['randomisation_spearman'][0], 2)} / {_f(e['randomisation_final_spearman'], 2)}" if e else ""
        lines.append(
            f"| {name} | {r['network']} {'x'.join(map(str, r['input_size']))} | {len(r['folds'])} | {minutes:.1f} | "
            f"{_f(r['auc_macro'])} | {_f(r['accuracy'])} | {_f(r['balanced_accuracy'])} | "
            f"{_f(r['ece_before'])} -> {_f(r['ece_after'])} | {unc} | "
            f"{rnd} | "
            f"{(_f(e['deletion_auc_gradcam']) + ' / ' + _f(e['deletion_auc_random'])) if e else ''} | "
            f"{r['images_per_s_network']:.0f} |")
    return lines


def classification_table(data: dict) -> str:
    """benchmarks/classification.py: one table per data set, then the speed table."""
    out = []
    for key, title in (("adrenalmnist3d", "AdrenalMNIST3D, official val split (98 volumes: 76 normal, 22 "
                        "hyperplasia)"), ("busi", "BUSI, seeded held-out 20 % (benchmarks/splits/busi_split.json)")):
        if key in data:
            out += [f"**{title}**", "", *_model_rows(data[key]["models"]), ""]
    if "mri_sequence" in data:
        r = data["mri_sequence"]["model"]
        out += ["**MRI sequence type, one study: slices 11-21 of each series (44 slices)**", "",
                *_model_rows({"mri": r}), "",
                f"Series-level decision (mean probability over the 11 held-out slices): {r['series_correct']} of 4 "
                "series right: " + ", ".join(f"{k} -> {v['pred']}" for k, v in r["series_decision"].items()), ""]
    if "speed" in data:
        sp = data["speed"]
        out += ["**Inference speed** (" + sp["note"] + ")", "",
                "| model | input | batch | parameters (M) | fp32 images/s | bf16 images/s | bf16 speed-up |",
                "|---|---|---:|---:|---:|---:|---:|"]
        for r in sp["rows"]:
            out.append(f"| {r['model']} ({r['dims']}D) | {r['input']} | {r['batch']} | {r['parameters_m']} | "
                       f"{r['fp32_images_per_s']} | {r['bf16_images_per_s']} | {r['bf16_speedup']} |")
        peers = [p for p in sp["peers"] if "peer" in p]
        if peers:
            out += ["", "| peer (same input, random weights) | peer fp32 images/s | medimg fp32 | peer bf16 images/s "
                    "| medimg bf16 | medimg / peer fp32 | medimg / peer bf16 |", "|---|---:|---:|---:|---:|---:|---:|"]
            out += [f"| {p['peer']} | {p['fp32_images_per_s']} | {p.get('medimg_fp32_images_per_s', '')} | "
                    f"{p['bf16_images_per_s']} | {p.get('medimg_bf16_images_per_s', '')} | {p['medimg_fp32_ratio']} "
                    f"| {p['medimg_bf16_ratio']} |" for p in peers]
    return "\n".join(out)


def registration_table(data: dict) -> str:
    """benchmarks/registration.py: hippocampus pairs, brain with known deformations, cross-modal rigid."""
    out = []
    if "hippocampus" in data:
        h = data["hippocampus"]
        out += [f"**Hippocampus, {h['n_pairs']} inter-subject pairs** ({h['pairs_file']}; {h['settings']})", "",
                "| method | mean Dice (labels 1, 2) | std over pairs | seconds per pair | x faster than B-spline | "
                "folding fraction (mean / max) |",
                "|---|---:|---:|---:|---:|---:|"]
        bspline_s = h["summary"].get("bspline", {}).get("seconds_mean")
        for m, v in h["summary"].items():
            fold, fmax = v.get("folding_fraction_mean"), v.get("folding_fraction_max")
            speed = "" if not (bspline_s and v.get("seconds_mean")) else format(bspline_s / v["seconds_mean"], ".1f")
            out.append(f"| {m} | {v['dice_mean']:.3f} | {v['dice_std']:.3f} | "
                       f"{'' if 'seconds_mean' not in v else format(v['seconds_mean'], '.3f')} | {speed} | "
                       f"{'' if fold is None else format(fold, '.2e')}"
                       f"{'' if fmax is None else ' / ' + format(fmax, '.2e')} |")
        out.append("")
    if "hippocampus" in data and {"learned", "bspline"} <= set(data["hippocampus"]["rows"][0]):
        rows = data["hippocampus"]["rows"]
        wins = sum(r["learned"]["dice"] > r["bspline"]["dice"] for r in rows)
        diffs = [r["learned"]["dice"] - r["bspline"]["dice"] for r in rows]
        out += [f"Per pair, learned minus B-spline Dice: mean {sum(diffs) / len(diffs):+.3f}, min {min(diffs):+.3f}, "
                f"max {max(diffs):+.3f}; learned higher on {wins} of {len(rows)} pairs.", ""]
    if "hippocampus_seeds" in data:
        h = data["hippocampus_seeds"]
        out += [f"**Learned model, training seeds** (same recipe, same {h['n_pairs']} pairs)", "",
                "| model | training seed | iterations | mean Dice | seconds per pair | max folding fraction |",
                "|---|---:|---:|---:|---:|---:|"]
        for name, m in h["models"].items():
            t = next(iter(m["training"].values()), {})
            out.append(f"| {name} | {t.get('seed', '')} | {t.get('iterations', '')} | {m['dice_mean']:.3f} | "
                       f"{m['seconds_mean']:.3f} | {m['folding_fraction_max']:.2e} |")
        std = h.get("dice_std_over_seeds")
        out += ["", f"Mean Dice over seeds {h['dice_mean_over_seeds']:.3f}"
                + ("" if std is None else f" +- {std:.3f} (sample std over {len(h['models'])} seeds)")
                + f", range {h['dice_range_over_seeds'][0]:.3f}-{h['dice_range_over_seeds'][1]:.3f}.", ""]
    if "brain" in data:
        b = data["brain"]
        out += [f"**Brain with known deformations** ({b['data']}; {b['deformation']}; {b['settings']})", "",
                "| deformation | method | mean Dice (30 labels) | field error mm mean | p95 | seconds | folding |",
                "|---|---|---:|---:|---:|---:|---:|"]
        for r in b["rows"]:
            for m in [k for k in ("before", "affine", "bspline", "demons", "learned") if k in r]:
                v = r[m]
                out.append(f"| seed {r['deformation_seed']} (true mean {r['true_displacement_mm_mean']:.2f} mm, max "
                           f"{r['true_displacement_mm_max']:.1f}) | {m} | {v['dice']:.3f} | "
                           f"{v['field_error_mm_mean']:.2f} | {_f(v.get('field_error_mm_p95'), 2)} | "
                           f"{_f(v.get('seconds'), 1)} | {_f(v.get('folding_fraction'), 5)} |")
        out.append("")
    if "crossmodal" in data:
        c = data["crossmodal"]
        out += [f"**Cross-modal rigid** ({c['fixed']} vs {c['moving']}; {c['settings']})", "",
                "| rotation deg (x, y, z) | translation mm | error before mm | error after mm (mean / max) | seconds |",
                "|---|---|---:|---:|---:|"]
        out += [f"| {r['rotation_deg']} | {r['translation_mm']} | {r['error_mm_before_mean']:.2f} | "
                f"{r['error_mm_after_mean']:.2f} / {r['error_mm_after_max']:.2f} | {r['seconds']:.1f} |"
                for r in c["rows"]]
    return "\n".join(out)


TABLES = {"io": io_table, "registration": registration_table, "classification": classification_table,
          "metrics": metrics_table, "segmentation": segmentation_table, "classical": classical_table}


def main() -> None:
    names = sys.argv[1:] or sorted(TABLES)
    for name in names:
        path = RESULTS / f"{name}.json"
        if not path.exists():
            sys.exit(f"{path} not found: run benchmarks/{name}.py first")
        data = json.loads(path.read_text())
        print(f"<!-- {name}: {data.get('command', '')}, {data.get('date', '')} -->")
        print(TABLES[name](data))
        print()


if __name__ == "__main__":
    main()
