"""The report's words and the order of its sections, as data (pure: no files, no clock).

`texts` gives every paragraph and caption by key; `SECTIONS` lists the report's sections in
order, each a heading and its parts (a paragraph, a list, a table or a figure, named by key).
analysis.report walks `SECTIONS` to build the document; nothing here draws or reads a study.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

import pandas as pd

from analysis import columns as C
from analysis.budget import protocol_caption
from analysis.quality import QUALITY_FACTOR, study_fid_bound
from analysis.tradeoff import PARAMS_FACTOR, SECONDS_FACTOR, reference_point
from study import results as R

TITLE = "GAN vs VAE on MNIST: study report"

# what a Part shows
TEXT = "text"  # Paragraph(texts[key])
BULLETS = "bullets"  # Bullets(lists[key])
TABLE = "table"  # Table(tables[key], texts[part.caption_key])
FIGURE = "figure"  # Figure(figs[key], texts[part.caption_key]); left out when the figure was not drawn


class Part(NamedTuple):
    kind: str
    key: str  # a text, a list, a table or a figure, by name
    caption: str | None = None  # the key of a table's or figure's caption in texts, if not `key`

    @property
    def caption_key(self) -> str:
        return self.caption or self.key


class Section(NamedTuple):
    heading: str
    parts: tuple[Part, ...]
    needs: str | None = None  # a figure or list without which the whole section is left out


# The report, top to bottom (declarative: a table of sections, not logic).
SECTIONS: tuple[Section, ...] = (
    Section("Verdict", (Part(TEXT, "rule"), Part(BULLETS, "summary"), Part(TABLE, "verdict"))),
    Section("Headline numbers", (Part(TABLE, "headline"),)),
    Section("Do the quality metrics agree?", (Part(TEXT, "agreement"), Part(TABLE, "metric_agreement"),
                                              Part(TABLE, "metric_leaders"))),
    Section("Usable trials and the trade-off axes", (Part(TEXT, "usable"),)),
    Section("Studies", (Part(TABLE, "overview"),)),
    Section("Protocols", (Part(TABLE, "protocols"),)),
    Section("The seed studies' numbers, side by side", (Part(TEXT, "comparable"),
                                                        Part(TABLE, "seed_studies"))),
    Section("Best, seed-configuration and Pareto trials", (Part(TABLE, "trials"),)),
    Section("Pareto fronts", (Part(FIGURE, "pareto"), Part(TABLE, "pareto_fronts"))),
    Section("Validation FID during training", (Part(FIGURE, "curves"),), needs="curves"),
    Section("Expected test FID at equal budget", (Part(FIGURE, "budget"), Part(TEXT, "budget_summary"),
                                                  Part(TABLE, "budget", "budget_table"))),
    Section("Hyperparameter effects", (Part(FIGURE, "hyper"),), needs="hyper"),
    Section("Hyperparameter importances (Optuna)", (Part(FIGURE, "importances"),
                                                    Part(TABLE, "param_importances")), needs="importances"),
    Section("Samples of the Pareto-optimal trials", (Part(FIGURE, "mosaic"),), needs="mosaic"),
    Section("Latent space of the best VAE", (Part(FIGURE, "latent"),), needs="latent"),
    Section("Skipped", (Part(BULLETS, "notes"),), needs="notes"),
)


def paragraphs(trials: pd.DataFrame, paths, n_trials: int, generated: datetime, budget_summary: str, *,
               quality: str, select: str, replicated: bool, allow_mixed: bool) -> dict[str, str]:
    """The report's paragraphs: intro, the verdict's rule, what counts as usable, what compares."""
    bounds = ", ".join(f"{s} {b:.4g}" for s, b in study_fid_bound(trials, select).items())
    ref = reference_point(trials, select)
    listed = ", ".join(str(p) for p in paths)
    intro = (
        f"Generated {generated:%Y-%m-%d %H:%M} UTC from {n_trials} trials in "
        f"{len(paths)} studies: {listed}. Every choice is made on validation: each group's best "
        f"trial and configuration (lowest {select}), Pareto membership and the trial behind each budget "
        f"point; {quality} only describes what was chosen."
        + (" Replicates over seeds are used where they exist." if replicated else "")
        + (" The studies were pooled with --allow-mixed although their protocols differ (see Protocols)."
           if allow_mixed else ""))
    rule = ("An axis has a winner only when the 95 % interval of the difference between the leader and "
            "the runner-up excludes zero; otherwise it is too close to call. Without replicates "
            "(replicates.parquet from `python -m study.replicate`) every axis is single seed, provisional.")
    usable = (
        f"A trial counts on a front or a trade-off axis only when it is usable: it ended with a model and "
        f"its {select} is at most {QUALITY_FACTOR:g} times the lowest {select} of its study's seed-study "
        f"configurations (bounds: {bounds}), plus class coverage where measured (analysis.quality). "
        f"Hypervolumes use log10 sizes and times, equal trial counts per group, and a fixed reference point: "
        f"{select} {ref[select]:.4g}, {ref[R.PARAMS_TOTAL]:.4g} parameters ({PARAMS_FACTOR:g} x the largest "
        f"seed configuration), {ref[R.TRAIN_SECONDS]:.4g} s ({SECONDS_FACTOR:g} x the slowest seed "
        f"configuration's time for the max epochs).")
    comparable = ("Comparable: only Inception FID to Inception FID (and then with caveats on protocol). Our "
                  "domain FID is computed on our MNIST feature network and is on a different scale; our "
                  "Inception Score uses an MNIST classifier (1 to 10), not comparable to 2.76 without "
                  "knowing theirs.")
    return {"intro": intro, "rule": rule, "usable": usable, "comparable": comparable,
            "budget_summary": budget_summary}


def sampler_captions(protocols: pd.DataFrame) -> str:
    """Which sampler and scheduler made each search study's trials (for the budget caption)."""
    return "; ".join(f"{row[R.STUDY]}: {protocol_caption(row[C.PLAN_SAMPLER], row[C.PLAN_SCHEDULER])}"
                     for _, row in protocols[protocols[C.REPRODUCES].isna()].iterrows())


def captions(quality: str, select: str, samplers: str) -> dict[str, str]:
    """Every table's and figure's caption by key (declarative: a caption table, not logic)."""
    q = quality
    return {
        "verdict": "Each axis, each group's value (mean [95 % CI] over seeds where replicated), the "
                   "leader-minus-runner-up difference with its 95 % interval, and the call.",
        "headline": f"Each group's best configuration (lowest {select}; among replicated configurations the "
                    f"lowest mean over seeds) and its seed configurations: {q} as mean and 95 % Student-t "
                    "interval over n_seeds seeds (n = 1: one trial, no interval).",
        "overview": f"Trials per stop reason, usable trials, epochs and training seconds summed; the best "
                    f"trial's {select} and the {q} that describes it.",
        "protocols": "Each study's protocol (study.json, else its rows): feature network, generated samples "
                     "per FID, training subset, max epochs, sampler and scheduler. Studies that differ are "
                     "refused unless --allow-mixed.",
        "seed_studies": "ours_seed_config: mean over our trials of the seed study's own configuration; "
                        "ours_best: the family's best trial (chosen on validation); reproduced: the seed "
                        "study's own experiment re-run (study.reproduce), mean and 95 % interval over its "
                        "seeds at its longest epoch count; blank: not measured.",
        "trials": f"Pareto: usable and non-dominated in ({select}, total parameters, training seconds) "
                  f"within its group; {q} describes the chosen trials.",
        "pareto": f"{select} against network size and training time; staircases are each group's front among "
                  "its usable trials, outlined dots its Pareto-optimal trials.",
        "pareto_fronts": "Usable trials on each group's fronts.",
        "curves": "Validation FID per epoch; the marker at each line's end shows how the trial ended "
                  "(early-stopped by the scheduler, completed, diverged).",
        "budget": f"Expected {q} of the lowest-{select} trial among k trials drawn without replacement "
                  "(Dodge et al. 2019, exact over all subsets; failed trials count as the worst value), over "
                  "k and over k times the mean training seconds, with the exact 95 % range. "
                  f"{samplers}.",
        "budget_table": "Expected value and exact 95 % range per number of trials.",
        "hyper": f"{q} against learning rate, latent size and total parameters.",
        "importances": "fANOVA importances (Hutter et al. 2014, optuna.importance) of the parameters every "
                       "complete trial of a study shares, for its validation FID, from the Optuna study the "
                       "launcher kept in optuna.db; a handful of trials make them rough. Explore them with "
                       "`optuna-dashboard sqlite:///<study dir>/optuna.db`.",
        "param_importances": "Importance per parameter and study.",
        "agreement": "Fidelity (FID, KID, precision) and diversity (recall) are different questions, and a "
                     "feature network may reward sharpness over content, so the metrics are compared on the "
                     "same trials: domain FID, KID, precision and recall are validation values of the final "
                     "model; the Inception FID is test-only and measured only for the chosen trials (best "
                     "and Pareto, study.launch --inception final), so its correlations rest on few trials.",
        "metric_agreement": "Spearman rank correlation across trials per metric pair; agreement > 0: both "
                            "order the trials alike; n_trials: trials with both.",
        "metric_leaders": "Each metric on each group's best trial (the lowest final_val_fid of a single "
                          "seed, the trial the study chose; with replicates the headline's best "
                          "configuration can be another one) and the group it favours.",
        "mosaic": "Last-epoch sample grids (8x8, fixed noise) of each group's Pareto trials (usable, chosen "
                  "on validation).",
        "latent": "Encoder means of test images, coloured by digit (projected to 2-D when the latent has "
                  "more dimensions).",
    }
