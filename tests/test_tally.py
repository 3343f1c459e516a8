"""normlab.tally: tickets made from real check results, a class tally of them, bad tickets refused."""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import pytest
import torch

from normlab.checks import check_layer_norm, check_rms_norm
from normlab.tally import EXERCISE_SECTIONS, exercise_of, plot_tally, read_ticket, tally, ticket

ROOT = Path(__file__).resolve().parent.parent


def right_layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps) * gamma + beta


def unbiased_layer_norm(x, gamma, beta, eps=1e-5):
    mean = x.mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(x.var(-1, unbiased=True, keepdim=True) + eps) * gamma + beta


def stub(*args, **kwargs):
    raise NotImplementedError


@pytest.fixture(scope="module")
def results():
    """Three learners' real check results: one fixed their mistake, one has a mistake, one has not started."""
    wrong = check_layer_norm(unbiased_layer_norm, layout="NLC")
    right = check_layer_norm(right_layer_norm, layout="NLC")
    not_started = check_rms_norm(stub)
    return wrong, right, not_started


def test_a_ticket_says_each_exercise_whether_it_passed_and_every_mistake_met(results):
    wrong, right, not_started = results
    assert wrong.mistake == "unbiased-variance" and right.passed and not_started.status == "not-solved"
    text = ticket(wrong, right, not_started)
    assert text.startswith("normlab-ticket 1 | check_layer_norm[layout='NLC'] passed unbiased-variance | ")
    assert re.fullmatch(r".* \| check_rms_norm\[layout='NLC'\] open \| crc [0-9a-f]{8}", text)
    assert "right_layer_norm" not in text and "unbiased_layer_norm" not in text  # nothing of the learner's
    assert read_ticket(text) == {
        "check_layer_norm[layout='NLC']": (True, ["unbiased-variance"]),
        "check_rms_norm[layout='NLC']": (False, []),
    }
    assert exercise_of(wrong) == "check_layer_norm[layout='NLC']"


def test_the_tally_counts_passes_and_mistakes_per_exercise(results):
    wrong, right, not_started = results
    tickets = [ticket(wrong, right), ticket(wrong), "Ana: " + ticket(wrong, not_started), "", "see you tomorrow"]
    report = tally("\n".join(tickets))
    assert (report.tickets, report.rejected) == (3, [])
    layer_norm, rms_norm = report.exercises
    assert (layer_norm.exercise, layer_norm.section, layer_norm.checked, layer_norm.passed) == (
        "check_layer_norm[layout='NLC']",
        "02 §6",
        3,
        1,
    )
    assert layer_norm.mistakes == {"unbiased-variance": 3} and (rms_norm.checked, rms_norm.passed) == (1, 0)
    assert "check_layer_norm[layout='NLC'] (notebook 02 §6): 1 of 3 passed; unbiased-variance (3)" in str(report)
    fig = plot_tally(report)
    ax = fig.axes[0]
    assert [p.get_width() for p in ax.patches] == [1, 3, 0, 1]  # checked bars (rms, layer), then passed bars
    assert "unbiased-variance (3)" in [t.get_text().strip() for t in ax.texts]


def test_bad_tickets_are_refused_with_the_reason_and_never_stop_the_tally(results, tmp_path):
    good = ticket(results[0])
    changed = good.replace("open", "passed")
    cut = good[: len(good) // 2]

    def signed(body):

        return f"{body} | crc {zlib.crc32(body.encode()):08x}"

    lines = [
        good,
        changed,
        cut,
        "normlab-ticket 1 | crc 00000000",
        signed("normlab-ticket 1 | check_made_up open"),
        signed("normlab-ticket 1 | check_layer_norm maybe"),
        signed("normlab-ticket 1 | check_layer_norm open not-a-code"),
        signed("normlab-ticket 1 | check_rms_norm open | check_rms_norm passed"),
        "normlab-ticket 2 | check_rms_norm open | crc 00000000",
    ]
    path = tmp_path / "tickets.txt"
    path.write_text("\n".join(lines))
    report = tally(path)
    assert report.tickets == 1
    assert [why for _, why in report.rejected] == [
        "its checksum does not match: the ticket was cut or changed after it was made",
        "not a ticket: it must start with 'normlab-ticket 1' and end with '| crc ...'",
        "its checksum does not match: the ticket was cut or changed after it was made",
        "unknown exercise 'check_made_up'",
        "status 'maybe' of check_layer_norm is neither 'passed' nor 'open'",
        "unknown mistake code 'not-a-code' in check_layer_norm",
        "check_rms_norm appears twice",
        "not a ticket: it must start with 'normlab-ticket 1' and end with '| crc ...'",
    ]
    assert [n for n, _ in report.rejected] == [2, 3, 4, 5, 6, 7, 8, 9]


def test_an_empty_class_gives_an_empty_tally_and_a_figure():
    report = tally("")
    assert (report.tickets, report.exercises, report.rejected) == (0, [], [])
    assert str(report) == "0 tickets read, 0 refused"
    assert plot_tally(report).axes[0].get_title() == "Class tally: 0 tickets"
    with pytest.raises(TypeError, match=r"ticket\(\) takes the results of check_\* calls; got str"):
        ticket("check_layer_norm passed")


def test_every_checker_has_the_section_of_its_exercise():
    from normlab import checks

    assert sorted(EXERCISE_SECTIONS) == sorted(n for n in checks.__all__ if n.startswith("check_"))
    for name, section in EXERCISE_SECTIONS.items():
        number, heading = section.split(" §")
        notebook = next((ROOT / "notebooks").glob(f"{number}_*.ipynb"))
        current, calls = None, set()
        for cell in json.loads(notebook.read_text())["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "markdown" and (match := re.search(r"^## (\d+) ·", source, re.M)):
                current = match.group(1)
            elif cell["cell_type"] == "code" and current == heading:
                calls.update(re.findall(r"^(check_\w+)\(", source, re.M))
        assert name in calls, (name, section)
