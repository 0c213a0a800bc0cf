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


def test_explore_returns_both_views_without_displaying():
    view, book = viz.explore(_recording_draw([]), [1, 2], label="x", figsize=(3, 2), show=False)
    assert view.slider.value == 1 and isinstance(book, HTML)
