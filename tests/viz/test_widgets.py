import pytest
from IPython.display import HTML

from iclr22 import viz
from iclr22.viz import widgets


def _recording_draw(calls):
    def draw(fig, value):
        calls.append(value)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, value])
        ax.set_title(f"value={value}")

    return draw


def test_live_view_draws_initial_figure_and_redraws_on_slider():
    calls = []
    view = viz.live_view(_recording_draw(calls), [0.1, 0.5, 0.9], label="p", initial=0.5)
    assert calls == [0.5]
    assert view.output.outputs, "the initial figure must be in the output area"
    view.slider.value = 0.9
    assert calls == [0.5, 0.9]
    assert len(view.output.outputs) == 1  # replaced, not appended


def test_live_view_defaults_to_first_value():
    calls = []
    view = viz.live_view(_recording_draw(calls), [3, 2, 1], label="k")
    assert calls == [3] and view.slider.value == 3


def test_flipbook_has_one_frame_per_value_and_works_offline():
    calls = []
    book = viz.flipbook(_recording_draw(calls), [1, 2, 3, 4], figsize=(3, 2))
    assert isinstance(book, HTML)
    assert calls.count(1) >= 1 and set(calls) == {1, 2, 3, 4}
    html = book.data
    assert html.count("data:image/png;base64") >= 4 or html.count("frames[") >= 4
    assert "http://" not in html and "https://" not in html  # nothing fetched at view time


def test_flipbook_rejects_oversized_output(monkeypatch):
    monkeypatch.setattr(widgets, "MAX_FLIPBOOK_BYTES", 1000)
    with pytest.raises(ValueError, match="MB"):
        viz.flipbook(_recording_draw([]), [1, 2], figsize=(3, 2))


@pytest.mark.parametrize("values, initial", [([], None), ([1, 2], 3)])
def test_bad_slider_values_are_rejected(values, initial):
    with pytest.raises(ValueError):
        viz.live_view(_recording_draw([]), values, label="x", initial=initial)


def test_explore_in_a_live_kernel_builds_only_the_live_widget(monkeypatch):
    monkeypatch.delenv("ICLR22_RECORD", raising=False)
    calls = []
    view, book = viz.explore(_recording_draw(calls), [1, 2], label="x", figsize=(3, 2),
                             show=False)
    assert view.slider.value == 1 and book is None
    assert calls == [1]  # no flip-book frames drawn


def test_explore_while_recording_builds_only_the_flipbook(monkeypatch):
    monkeypatch.setenv("ICLR22_RECORD", "1")
    view, book = viz.explore(_recording_draw([]), [0.5, 1.0], label="fraction", show=False,
                             figsize=(3, 2))
    assert view is None and isinstance(book, HTML)
    assert "fraction = 0.5, 1" in book.data  # frames named as the live slider names them


def test_explore_displays_exactly_one_view(monkeypatch):
    shown = []
    monkeypatch.setattr(widgets, "display", shown.append)
    for static in (False, True):
        viz.explore(_recording_draw([]), [1, 2], label="x", figsize=(3, 2), static=static)
    assert len(shown) == 2
    assert not isinstance(shown[0], HTML) and isinstance(shown[1], HTML)


def test_explore_checks_initial_in_both_modes():
    for static in (False, True):
        with pytest.raises(ValueError):
            viz.explore(_recording_draw([]), [1, 2], label="x", initial=5, static=static,
                        show=False)


def test_slider_and_flipbook_write_values_alike():
    view = viz.live_view(_recording_draw([]), [0.25, 99], label="epoch", figsize=(3, 2))
    slider_labels = [text for text, _ in view.slider.options]
    book = viz.flipbook(_recording_draw([]), [0.25, 99], label="epoch", figsize=(3, 2))
    assert slider_labels == ["0.25", "99"]
    assert "epoch = 0.25, 99" in book.data


def test_too_wide_figures_warn():
    with pytest.warns(UserWarning, match="wider than the book's column"):
        viz.live_view(_recording_draw([]), [1], label="x", figsize=(11, 3))


def test_flipbook_frames_have_alt_text():
    book = viz.flipbook(_recording_draw([]), [1, 2], label="k", figsize=(3, 2),
                        alt="A line from 0 rising to k")
    assert '<img alt="A line from 0 rising to k" id="_anim_img' in book.data
    default = viz.flipbook(_recording_draw([]), [1, 2], label="k", figsize=(3, 2))
    assert '<img alt="Figure drawn for each k: 1, 2" id="_anim_img' in default.data
