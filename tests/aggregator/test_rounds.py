"""The pure round rules: outliers, the disagreeing pair, frozen and stuck venues, status, USDT."""

from decimal import Decimal

from aggregator.aggregation import ExchangePrice
from aggregator.rounds import Rules, Status, frozen_detail, judge_round, pick_live, to_e8

M = 1_795_000_020 // 60 * 60
RULES = Rules()


def price(exchange: str, value: str, minute: int = M, quote: str = "USD") -> ExchangePrice:
    return ExchangePrice(exchange, minute, Decimal(value), quote, ("n",), minute + 61.0)


def three(binance: str = "100000", coinbase: str = "100010", kraken: str = "99990"):
    return [price("binance", binance), price("coinbase", coinbase), price("kraken", kraken)]


def test_three_close_inputs_are_ok_with_half_the_range_as_confidence():
    result = judge_round(M, three(), rules=RULES)
    assert result.status is Status.OK
    assert result.price == Decimal("100000")
    assert result.confidence == Decimal("10")
    assert result.excluded == ()


def test_a_five_percent_jump_is_excluded_and_named_with_its_deviation():
    result = judge_round(M, three(kraken="105000"), rules=RULES)
    assert result.status is Status.OK
    assert result.price == Decimal("100005")  # mean of the two healthy venues
    (jumped,) = result.excluded
    assert (jumped.exchange, jumped.reason) == ("kraken", "deviation")
    assert jumped.deviation == Decimal("4990") / Decimal("100010")
    assert "4.99 %" in jumped.detail
    assert "median 100010.00" in jumped.detail


def test_two_kept_inputs_ok_one_degraded_none_unknown():
    two = judge_round(M, three()[:2], rules=RULES)
    assert (two.status, two.price) == (Status.OK, Decimal("100005"))
    one = judge_round(M, three()[:1], rules=RULES)
    assert (one.status, one.price, one.confidence) == (Status.DEGRADED, Decimal("100000"), 0)
    assert "1 input(s) kept, 2 needed for OK" in one.summary
    none = judge_round(M, [], rules=RULES)
    assert (none.status, none.price, none.confidence) == (Status.UNKNOWN, None, None)


def test_min_sources_decides_ok():
    result = judge_round(M, three()[:2], rules=Rules(min_sources=3))
    assert result.status is Status.DEGRADED


def test_two_inputs_that_disagree_are_both_excluded_and_nothing_is_published():
    result = judge_round(M, [price("binance", "100000"), price("kraken", "102000")], rules=RULES)
    assert result.status is Status.UNKNOWN
    assert result.price is None
    assert [(item.exchange, item.reason) for item in result.excluded] == [
        ("binance", "disagreement"),
        ("kraken", "disagreement"),
    ]
    assert "differ by 1.98 %" in result.summary


def test_two_inputs_within_the_limit_are_both_kept():
    result = judge_round(M, [price("binance", "100000"), price("kraken", "100900")], rules=RULES)
    assert result.status is Status.OK
    assert result.confidence == Decimal("450")


def test_median_method():
    result = judge_round(M, three(coinbase="100600"), rules=Rules(method="median"))
    assert result.price == Decimal("100000")
    assert result.method == "median"


def closes(**series: list[str]) -> dict[str, dict[int, Decimal]]:
    """Each exchange's closes, oldest first, ending at minute M."""
    return {
        exchange: {M - 60 * (len(values) - 1 - i): Decimal(v) for i, v in enumerate(values)}
        for exchange, values in series.items()
    }


def test_a_frozen_venue_is_excluded_while_the_others_move():
    history = closes(
        binance=["100000"] * 6,
        coinbase=["99900", "99950", "100000", "100020", "100030", "100010"],
        kraken=["99890", "99960", "99990", "100030", "100020", "99990"],
    )
    result = judge_round(M, three(), rules=RULES, closes=history)
    (frozen,) = result.excluded
    assert (frozen.exchange, frozen.reason) == ("binance", "frozen")
    assert "unchanged for 5 minutes" in frozen.detail
    assert result.status is Status.OK
    assert result.price == Decimal("100000")  # mean of coinbase and kraken


def test_a_quiet_market_is_not_frozen():
    history = closes(binance=["100000"] * 6, kraken=["99990"] * 6)
    assert frozen_detail("binance", M, history, 5) is None
    # Flat for only four minutes is not frozen yet either.
    moving = closes(binance=["100000"] * 5, kraken=["1", "2", "3", "4", "5"])
    assert frozen_detail("binance", M, moving, 5) is None


def test_a_venue_stuck_on_an_old_minute_is_named_with_its_minute():
    stuck = price("kraken", "99000", minute=M - 180)
    result = judge_round(M, three()[:2], rules=RULES, stuck=[stuck])
    (named,) = result.excluded
    assert (named.exchange, named.reason, named.price.minute) == ("kraken", "stuck", M - 180)
    assert "3 minute(s) behind" in named.detail
    assert result.status is Status.OK
    behind = judge_round(M, three()[:2], rules=RULES, stuck=[price("kraken", "1", M - 60)])
    assert behind.excluded[0].reason == "behind"


def test_usdt_is_converted_with_the_rate():
    inputs = [price("binance", "100100", quote="USDT"), price("kraken", "100000")]
    result = judge_round(M, inputs, rules=RULES, usdt_rate=Decimal("0.999"))
    binance = next(item for item in result.kept if item.exchange == "binance")
    assert binance.usd_price == Decimal("99999.900")
    assert result.usdt_converted
    assert not result.usdt_at_par
    assert result.price == Decimal("99999.9500")


def test_usdt_without_a_rate_is_taken_at_par_and_flagged():
    inputs = [price("binance", "100100", quote="USDT"), price("kraken", "100000")]
    result = judge_round(M, inputs, rules=RULES)
    assert result.usdt_at_par
    assert not result.usdt_converted
    assert result.price == Decimal("100050")
    usd_only = judge_round(M, [price("kraken", "100000")], rules=RULES)
    assert not usd_only.usdt_at_par


def test_the_live_minute():
    ok_old = judge_round(M, three(), rules=RULES)
    degraded_new = judge_round(M + 60, [price("binance", "100000", M + 60)], rules=RULES)
    # An open minute with only its fastest venue does not replace a final OK one ...
    assert pick_live([(degraded_new, False), (ok_old, True)]) == (ok_old, True)
    # ... but once closed DEGRADED, that is the truth about the newest minute.
    assert pick_live([(degraded_new, True), (ok_old, True)]) == (degraded_new, True)
    # An open minute as good as the final one wins; the best open one without a closed one.
    ok_new = judge_round(M + 60, three(), rules=RULES)
    assert pick_live([(ok_new, False), (ok_old, True)]) == (ok_new, False)
    assert pick_live([(degraded_new, False), (ok_old, False)]) == (ok_old, False)
    assert pick_live([(degraded_new, False)]) == (degraded_new, False)
    assert pick_live([]) is None


def test_e8_rounds_half_to_even():
    assert to_e8(Decimal("1.000000005")) == 100000000
    assert to_e8(Decimal("1.000000015")) == 100000002


def test_one_frozen_one_jumping_one_healthy_publishes_the_healthy_one_degraded():
    history = closes(
        binance=["100000"] * 6,
        coinbase=["99900", "99950", "100000", "100020", "100030", "100010"],
    )
    inputs = three(binance="100000", coinbase="100010", kraken="105010")
    result = judge_round(M, inputs, rules=RULES, closes=history)
    assert [(item.exchange, item.reason) for item in result.excluded] == [
        ("binance", "frozen"),
        ("kraken", "deviation"),
    ]
    assert (result.status, result.price) == (Status.DEGRADED, Decimal("100010"))
