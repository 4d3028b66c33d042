"""The report's first section: the study's answers at a glance.

Two sentences (the deployable, prompt-free result; the best oracle prompt), then per prompt
the study's table: metric | pretrained | fine-tuned | change, each mean with its std and 95%
bootstrap interval, the change as the paired mean of per-view differences with its interval,
relative change and Wilcoxon p. A mean over too few views is flagged in bold.
"""

from __future__ import annotations

from floodcache.evaluate.metrics import METRIC_NAMES, METRICS
from floodcache.prompts import PROMPTS
from floodcache.report import markdown, statistics
from floodcache.report.material import Material
from floodcache.train.runs import PRETRAINED, DecoderModel


def headline_section(material: Material) -> list[str]:
    lines = ["## Headline", ""]
    lines += [_deployable(material), "", _best_oracle(material), ""]
    lines += [
        f"Means over views, ± the standard deviation of the views' values, with the mean's "
        f"95% bootstrap interval in brackets ({statistics.RESAMPLES:,} resamples of the views, "
        f"seed {statistics.SEED}; none on fewer than {statistics.MIN_INTERVAL_VIEWS} views, "
        "where it would be too narrow); change: fine-tuned minus pretrained "
        "on the same view with the same prompt, averaged over views, with its interval and the "
        "two-sided Wilcoxon signed-rank test's p; relative change: of the two means."
    ]
    for prompt in material.prompts:
        lines += ["", *_study_table(material, prompt)]
    return lines


def _best_model(material: Material, prompt: str) -> DecoderModel:
    """The fine-tuned run with the highest mean IoU on `prompt`, each compared with
    `pretrained` (which it may not beat); `pretrained` when no run was evaluated."""
    candidates = material.runs or material.models
    scored = [(material.interval(m.name, prompt, "iou"), m) for m in candidates]
    return max(scored, key=lambda pair: -1.0 if pair[0] is None else pair[0].mean)[1]


def _claim(material: Material, model: DecoderModel, prompt: str) -> str:
    """`model`'s mean IoU on `prompt`, against `pretrained`'s, with the paired change."""
    mine = material.interval(model.name, prompt, "iou")
    if mine is None:
        return f"no view could be evaluated with `{prompt}`."
    if model.run is None:
        text = f"`{PRETRAINED}` reaches mean IoU {mine.text()}"
    else:
        base = material.interval(PRETRAINED, prompt, "iou")
        change = material.paired(model.name, prompt, "iou")
        # the pretrained decoder is evaluated on the same views as every run
        assert base is not None and change is not None, "pretrained has the run's views"
        text = (
            f"fine-tuned {markdown.code(model.name)} reaches mean IoU {mine.text()} "
            f"against {base.text()} "
            f"for `{PRETRAINED}`, a change of {change.difference.signed()} per view "
            f"({change.p_clause()})"
        )
    return f"{text}; {statistics.views_text(mine.n)}."


def _deployable(material: Material) -> str:
    free = [p for p in material.prompts if not PROMPTS[p].oracle]
    if not free:
        return (
            "**Deployable:** no prompt-free strategy was evaluated (add `none` to "
            "--eval-prompts): every number below needs a prompt made from the ground truth."
        )
    prompt = free[0]
    model = _best_model(material, prompt)
    lead = f"**Deployable (no prompt, `{prompt}`, needs no ground truth):** "
    return lead + _claim(material, model, prompt)


def _best_oracle(material: Material) -> str:
    oracles = [p for p in material.prompts if PROMPTS[p].oracle]
    if not oracles:
        return "**Best oracle prompt:** none was evaluated."
    best = {p: _best_model(material, p) for p in oracles}

    def score(prompt: str) -> float:
        interval = material.interval(best[prompt].name, prompt, "iou")
        return -1.0 if interval is None else interval.mean

    prompt = max(oracles, key=score)
    lead = (
        f"**Best oracle prompt:** {markdown.prompt_title(prompt)} (made from the ground truth: "
        "SAM with a perfect annotator, an upper bound, not a deployed system): "
    )
    return lead + _claim(material, best[prompt], prompt)


def _study_table(material: Material, prompt: str) -> list[str]:
    """The study's table for one prompt: one column pair per fine-tuned run."""
    evaluated = material.evaluated(PRETRAINED, prompt)
    skipped = material.table.filter(
        (material.table["model"] == PRETRAINED) & (material.table["prompt"] == prompt)
    )["skipped"].sum()
    title = f"### {markdown.prompt_title(prompt)}: {PROMPTS[prompt].description}"
    note = statistics.views_text(evaluated.height)
    note += f"; {skipped} skipped (no water)" if skipped else ""
    header = ["metric", f"`{PRETRAINED}`"]
    for run in material.runs:
        header += [markdown.code(run.name), "change", "relative", "Wilcoxon p"]
    rows = [_study_row(material, prompt, metric) for metric in METRICS]
    return [title, "", f"Evaluated on {note}.", "", *markdown.table(header, rows)]


def _study_row(material: Material, prompt: str, metric: str) -> list[str]:
    base = material.interval(PRETRAINED, prompt, metric)
    row = [METRIC_NAMES[metric], _mean_cell(material, PRETRAINED, prompt, metric)]
    for run in material.runs:
        mine, change = material.interval(run.name, prompt, metric), None
        if mine is not None:
            change = material.paired(run.name, prompt, metric)
        row.append(_mean_cell(material, run.name, prompt, metric))
        if change is None:
            row += ["–", "–", "–"]
            continue
        assert mine is not None and base is not None, "a change needs both intervals"
        row += [
            change.difference.signed(),
            markdown.relative(mine.mean, base.mean),
            change.p_text(),
        ]
    return row


def _mean_cell(material: Material, model: str, prompt: str, metric: str) -> str:
    """`mean ± std [low, high]`, `–` when no view was evaluated."""
    values = material.evaluated(model, prompt)[metric]
    interval = material.interval(model, prompt, metric)
    if interval is None:
        return "–"
    std = values.std() if values.len() > 1 else 0.0
    return f"{interval.mean:.3f} ± {std:.3f} {interval.bracket()}"
