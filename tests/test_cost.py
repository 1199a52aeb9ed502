"""folding_pays: folding two linear maps pays only over enough rows."""

from relational_rnn._cost import folding_pays


def test_folding_pays_counts_forming_the_product():
    # A readout's fold (S -> H -> H) saves H * H per row and costs H * H * S once: it pays
    # from S + 1 rows on.
    assert not folding_pays(rows=64, inputs=64, middle=128, outputs=128)
    assert folding_pays(rows=65, inputs=64, middle=128, outputs=128)
    # The paper RMC's input maps (40 -> 256 -> 1280): not for one step of one sample,
    # but for a batch of sequences.
    assert not folding_pays(rows=1, inputs=40, middle=256, outputs=1280)
    assert folding_pays(rows=2048, inputs=40, middle=256, outputs=1280)


def test_folding_pays_per_row_when_the_folded_map_is_smaller():
    # 1000 * 1280 multiply-adds per row folded, against 256 * (1000 + 1280) unfolded.
    assert not folding_pays(rows=10**6, inputs=1000, middle=256, outputs=1280)
    # 300 * 1280 against 256 * (300 + 1280): folding pays although the input is wider.
    assert folding_pays(rows=10**6, inputs=300, middle=256, outputs=1280)
