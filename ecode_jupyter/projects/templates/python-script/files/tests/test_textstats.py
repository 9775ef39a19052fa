import pytest

from textstats import reading_minutes, summarize, tokenize, top_words, word_frequencies


def test_tokenize_lowercases_and_keeps_contractions():
    assert tokenize("Don't STOP, well-known fact!") == ["don't", "stop", "well-known", "fact"]


def test_tokenize_handles_unicode_words_and_curly_apostrophes():
    assert tokenize("Café naïve it\u2019s") == ["café", "naïve", "it's"]


def test_word_frequencies_counts_repeats():
    counts = word_frequencies("the cat and the hat")
    assert counts["the"] == 2
    assert counts["cat"] == 1


def test_top_words_breaks_ties_alphabetically():
    assert top_words("b a c a b d", n=3) == [("a", 2), ("b", 2), ("c", 1)]


def test_top_words_rejects_negative_n():
    with pytest.raises(ValueError, match="zero or more"):
        top_words("text", n=-1)


@pytest.mark.parametrize(("words", "minutes"), [(0, 0), (1, 1), (230, 1), (231, 2)])
def test_reading_minutes_rounds_up(words, minutes):
    assert reading_minutes(words) == minutes


def test_summarize_reports_every_figure():
    summary = summarize("one two\ntwo three three three\n", top=2)
    assert summary.lines == 2
    assert summary.words == 6
    assert summary.unique_words == 3
    assert summary.characters == 30
    assert summary.top_words == [("three", 3), ("two", 2)]


def test_summarize_empty_text():
    summary = summarize("")
    assert (summary.words, summary.lines, summary.reading_minutes) == (0, 0, 0)
    assert summary.top_words == []
