import re

import pytest
from hypothesis import given, settings, strategies as st

from rootsand.runtime.termfilter import CSI_LIMIT, STRING_LIMIT, OutputFilter


def run(data: bytes, allow_titles: bool = False) -> tuple[bytes, int, bytes]:
    """Output, dropped count and finish() of one filter fed data in one call."""
    output_filter = OutputFilter(allow_titles=allow_titles)
    output = output_filter.feed(data)
    return output, output_filter.dropped, output_filter.finish()


def run_in_chunks(chunks, allow_titles: bool = False) -> tuple[bytes, int, bytes]:
    output_filter = OutputFilter(allow_titles=allow_titles)
    output = b"".join(output_filter.feed(chunk) for chunk in chunks)
    return output, output_filter.dropped, output_filter.finish()


# Queries a filtered stream must never hold, in the form the filter sends sequences on (7-bit, no control
# characters inside a CSI).
FORBIDDEN = re.compile(rb"\x1b\[[<=>?]?[0-9:;]*[ -/]*[cntxyi]"  # DA, DSR, window ops, DECREQTPARM, ...
                       rb"|\x1b\[[<=>?]?[0-9:;]*\$p"  # DECRQM
                       rb"|\x1b\[>[0-9;]*q|\x1b\[[?=<>][0-9;]*u|\x1b\[\?[0-9;]*m"  # XTVERSION, kitty, XTQMODKEYS
                       rb"|\x1b[]PX^_Z%]|\x05|\xc2[\x90\x98\x9a-\x9f]")  # strings, DECID, ENQ, UTF-8 C1


# Plain text.

def test_plain_text_is_returned_as_is():
    text = "plain text, tabs\tand lines\r\n".encode() * 100
    output_filter = OutputFilter()
    assert output_filter.feed(text) is text
    assert output_filter.finish() == b""


def test_utf8_text_with_c1_like_continuation_bytes_passes_unchanged():
    text = "ě ĝ ğ Ğ Ð ĝ © « \u00a0 ¿ \u0085 x".encode()  # C4 9B, C4 9D, C4 9F, ..., C2 A9, C2 85
    assert b"\x9b" in text and b"\x9d" in text and b"\xc2\x85" in text
    assert run(text) == (text, 0, b"")
    assert run(b"\xc4\x9b6n \xc4\x9d52;c;eA==\x07") == (b"\xc4\x9b6n \xc4\x9d52;c;eA==\x07", 0, b"")


def test_lone_c2_becomes_a_replacement_so_it_cannot_join_a_later_9b():
    assert run(b"\xc2\x1b[c\x9b6n") == (b"\xef\xbf\xbd\x9b6n", 1, b"")
    assert run(b"\xc2\x05\x9b6n") == (b"\xef\xbf\xbd\x9b6n", 1, b"")
    assert run(b"a\xc2") == (b"a", 0, b"\xef\xbf\xbd")


# What is dropped.

DROPPED = [
    # OSC, BEL- and ST-terminated
    b"\x1b]52;c;ZXZpbA==\x07", b"\x1b]52;c;ZXZpbA==\x1b\\", b"\x1b]52;c;?\x07", b"\x1b]0;title\x07",
    b"\x1b]1;icon\x1b\\", b"\x1b]2;title\x1b\\", b"\x1b]8;;https://example.com\x1b\\", b"\x1b]4;1;?\x1b\\",
    b"\x1b]4;1;rgb:ff/00/00\x07", b"\x1b]10;?\x07", b"\x1b]11;?\x07", b"\x1b]11;?\x1b\\", b"\x1b]12;?\x07",
    b"\x1b]104\x07", b"\x1b]110\x07", b"\x1b]7;file://host/tmp\x07", b"\x1b]777;notify;a;b\x07",
    b"\x1b]1337;File=:AAAA\x07", b"\x1b]50;?\x07",
    # CSI queries and window operations
    b"\x1b[c", b"\x1b[0c", b"\x1b[>c", b"\x1b[>0c", b"\x1b[=c", b"\x1b[=0c", b"\x1b[5n", b"\x1b[6n", b"\x1b[?6n",
    b"\x1b[?996n", b"\x1b[>4n", b"\x1b[?2026$p", b"\x1b[?12$p", b"\x1b[4$p", b"\x1b[x", b"\x1b[1x", b"\x1b[>q",
    b"\x1b[>0q", b"\x1b[?u", b"\x1b[>1u", b"\x1b[=1;1u", b"\x1b[<u", b"\x1b[14t", b"\x1b[18t", b"\x1b[21t",
    b"\x1b[8;50;100t", b"\x1b[22;0;0t", b"\x1b[3;0;0t", b"\x1b[?4m", b"\x1b[?1;1;0S", b"\x1b[1;1;1;1;24;80*y",
    b"\x1b[5i", b"\x1b[?5i", b"\x1b[#R", b"\x1b[1#|", b"\x1b[1$w", b"\x1b[1'|", b"\x1b[1;1'z", b"\x1b[2$~",
    b"\x1b[132$|", b"\x1b[60*|", b"\x1b[61;1\"p", b"\x1b[\"v", b"\x1b[&u", b"\x1b[1$u", b"\x1b[+p", b"\x1b[>1p",
    # malformed CSIs
    b"\x1b[1?h", b"\x1b[?>c", b"\x1b[1 1q",
    # DCS, SOS, PM, APC
    b"\x1bP$qm\x1b\\", b"\x1bP$q\"p\x1b\\", b"\x1bP+q544e\x1b\\", b"\x1bP1;1|17/616263\x1b\\",
    b"\x1bPq#0;2;0;0;0#0~~@@vv@@~~$-\x1b\\", b"\x1bXhidden\x1b\\", b"\x1b^private\x07message\x1b\\",
    b"\x1b_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\",
    # ESC sequences
    b"\x1bZ", b"\x1b%@", b"\x1b%G", b"\x1b G", b"\x1b F", b"\x1bn", b"\x1bo", b"\x1b~", b"\x1bN", b"\x1b*0",
    b"\x1b+0", b"\x1b-A", b"\x1b(%5", b"\x1b\\", b"\x1b#9",
    # ENQ
    b"\x05",
    # UTF-8 encoded C1 introducers
    b"\xc2\x9bc", b"\xc2\x9b6n", b"\xc2\x9b>c", b"\xc2\x9b?6n", b"\xc2\x9b21t", b"\xc2\x9d52;c;eA==\x07",
    b"\xc2\x9d52;c;eA==\xc2\x9c", b"\xc2\x9d0;title\xc2\x9c", b"\xc2\x90$qm\xc2\x9c", b"\xc2\x90+q544e\x1b\\",
    b"\xc2\x9a", b"\xc2\x9c", b"\xc2\x9ePM\xc2\x9c", b"\xc2\x9fAPC\xc2\x9c", b"\xc2\x98SOS\xc2\x9c",
]


@pytest.mark.parametrize("sequence", DROPPED)
def test_dropped(sequence):
    assert run(b"a" + sequence + b"b") == (b"ab", 1, b"")


def test_osc_is_dropped_whatever_ends_it():
    assert run(b"a\x1b]52;c;eA==\x07b\x1b]52;c;eA==\x1b\\c\x1b]52;c;eA==\xc2\x9cd") == (b"abcd", 3, b"")
    # ESC other than ST ends the string, and the terminal reads a new sequence from it
    assert run(b"a\x1b]52;c;eA==\x1b[1mb") == (b"a\x1b[1mb", 1, b"\x1b[0m")


def test_tmux_passthrough_is_dropped_with_what_it_wraps():
    assert run(b"a\x1bPtmux;\x1b\x1b]52;c;eA==\x07\x1b\\b") == (b"ab", 4, b"")


def test_can_and_sub_abort_a_sequence_and_pass_themselves():
    assert run(b"\x1b[6\x18n") == (b"\x18n", 1, b"")
    assert run(b"\x1b]52;c;eA==\x1arest") == (b"\x1arest", 1, b"")
    assert run(b"\x1bP$q\x18m") == (b"\x18m", 1, b"")
    assert run(b"\x1b(\x1a0") == (b"\x1a0", 1, b"")


def test_controls_inside_a_sequence_run_before_it():
    assert run(b"\x1b[3\r1m") == (b"\r\x1b[31m", 0, b"\x1b[0m")
    assert run(b"\x1b[6\r\nn") == (b"\r\n", 1, b"")
    assert run(b"\x1b[1\x05m") == (b"\x1b[1m", 1, b"\x1b[0m")
    assert run(b"\x1b\r[1m") == (b"\r\x1b[1m", 0, b"\x1b[0m")
    assert run(b"\x1b[3\x7f1m") == (b"\x1b[31m", 0, b"\x1b[0m")


def test_non_ascii_inside_a_sequence_aborts_it():
    assert run(b"\x1b[3\xc4\x9bm") == (b"\xc4\x9bm", 1, b"")
    assert run(b"\x1b[1\xc2\x9b6n") == (b"", 2, b"")
    assert run(b"\x1b\xc3\xa9") == ("é".encode(), 1, b"")


def test_escape_escape_restarts():
    assert run(b"\x1b\x1b[c") == (b"", 2, b"")
    assert run(b"\x1b[1\x1b[2J") == (b"\x1b[2J", 1, b"")


def test_mode_lists_lose_the_modes_never_passed():
    assert run(b"\x1b[2;4h") == (b"\x1b[4h", 1, b"\x1b[4l")
    assert run(b"\x1b[2h") == (b"", 1, b"")
    assert run(b"\x1b[?2l") == (b"", 1, b"")
    assert run(b"\x1b[?2;25l") == (b"\x1b[?25l", 1, b"\x1b[?25h")
    assert run(b"\x1b[?1049:1h") == (b"", 1, b"")
    assert run(b"\x1b[?4294968345h") == (b"", 1, b"")
    assert run(b"\x1b[?0001049h") == (b"\x1b[?0001049h", 0, b"\x1b[?1049l")


# What is kept.

KEPT = [
    b"\x1b[m", b"\x1b[0m", b"\x1b[1;31m", b"\x1b[38;5;208m", b"\x1b[48;2;10;20;30m", b"\x1b[38:2::10:20:30m",
    b"\x1b[4:3m", b"\x1b[8m", b"\x1b[H", b"\x1b[10;20H", b"\x1b[3A", b"\x1b[B", b"\x1b[C", b"\x1b[2D", b"\x1b[5G",
    b"\x1b[12d", b"\x1b[2J", b"\x1b[K", b"\x1b[1K", b"\x1b[2K", b"\x1b[5X", b"\x1b[3@", b"\x1b[2P", b"\x1b[L",
    b"\x1b[M", b"\x1b[2S", b"\x1b[3T", b"\x1b[1;24r", b"\x1b[r", b"\x1b[s", b"\x1b[u", b"\x1b[I", b"\x1b[Z",
    b"\x1b[?2J", b"\x1b[?1K", b"\x1b[2 q", b"\x1b[ q", b"\x1b[1\"q", b"\x1b[>4;2m", b"\x1b[>4m",
    b"\x1b[?1049h", b"\x1b[?1049l", b"\x1b[?25l", b"\x1b[?25h", b"\x1b[?1000;1006h", b"\x1b[?12h", b"\x1b[?1048h",
    b"\x1b[4h", b"\x1b[4l", b"\x1b[?1000s", b"\x1b[?1000r", b"\x1b[1;1;5;5$z", b"\x1b[3 @",
    b"\x1b7", b"\x1b8", b"\x1bM", b"\x1bD", b"\x1bE", b"\x1b=", b"\x1b>", b"\x1b(0", b"\x1b(B",
    b"\x1b)0", b"\x1b(A", b"\x1b#8", b"\x1b#6", b"\x0e", b"\x0f", b"\x07", b"\x08", b"\t", b"\r\n", b"\x00",
]


@pytest.mark.parametrize("sequence", KEPT)
def test_kept(sequence):
    output, dropped, _ = run(b"a" + sequence + b"b")
    assert (output, dropped) == (b"a" + sequence + b"b", 0)


def test_utf8_c1_csi_that_is_harmless_goes_out_in_7_bit_form():
    assert run(b"\xc2\x9b1;31mred\xc2\x9b0m") == (b"\x1b[1;31mred\x1b[0m", 0, b"\x1b[0m")


VIM_START = (b"\x1b[?1049h\x1b[22;0;0t\x1b[>4;2m\x1b[?1h\x1b=\x1b[H\x1b[2J\x1b]11;?\x07\x1b[?2004h\x1b[?u\x1b[c"
             b"\x1b[?25l\x1b[1;1H\x1b[94m~                   \x1b[m\r\n\x1b[94m~\x1b[m\x1b[24;63H0,0-1\x1b[9CAll"
             b"\x1b[1;1H\x1b[?25h\x1b[?12$p\x1b[>c")
VIM_START_KEPT = (b"\x1b[?1049h\x1b[>4;2m\x1b[?1h\x1b=\x1b[H\x1b[2J\x1b[?2004h"
                  b"\x1b[?25l\x1b[1;1H\x1b[94m~                   \x1b[m\r\n\x1b[94m~\x1b[m\x1b[24;63H0,0-1\x1b[9CAll"
                  b"\x1b[1;1H\x1b[?25h")
VIM_EXIT = b"\x1b[?2004l\x1b[>4;m\x1b[23;0;0t\x1b[?1l\x1b>\x1b[?1049l"


def test_vim_keeps_its_screen_and_loses_its_queries():
    output_filter = OutputFilter()
    assert output_filter.feed(VIM_START) == VIM_START_KEPT
    assert output_filter.dropped == 6
    assert output_filter.finish() == b"\x1b[?1049l\x1b[?1l\x1b[?2004l\x1b[?25h\x1b[0m\x1b>\x1b[>4m"


def test_vim_that_exits_cleanly_gets_only_resets_that_change_nothing():
    output_filter = OutputFilter()
    output_filter.feed(VIM_START)
    assert output_filter.feed(VIM_EXIT) == b"\x1b[?2004l\x1b[>4;m\x1b[?1l\x1b>\x1b[?1049l"
    # the same modes again, and the alternate screen left in a way that cannot move the cursor
    assert output_filter.finish() == b"\x1b[?1047l\x1b[?1l\x1b[?2004l\x1b[?25h\x1b[0m\x1b(B\x0f\x1b>\x1b[>4m"


def test_less_and_htop_screens():
    less = (b"\x1b[?1049h\x1b[?1h\x1b=\rline 1\r\nline 2\r\n\x1b[7m(END)\x1b[27m\x1b[K"
            b"\r\x1b[K\x1b[?1l\x1b>\x1b[?1049l")
    assert run(less) == (less, 0, b"\x1b[?1047l\x1b[?1l\x1b[0m\x1b(B\x0f\x1b>")
    htop = (b"\x1b[?1049h\x1b[22;0;0t\x1b[1;24r\x1b(B\x1b[m\x1b[4l\x1b[?7h\x1b[?1h\x1b=\x1b[?1000h\x1b[?1006h"
            b"\x1b[39;49m\x1b[?25l\x1b[H\x1b[2J  CPU[\x1b[32m|||\x1b[38;5;208m5.0%\x1b[48;2;10;20;30m]")
    assert run(htop) == (htop.replace(b"\x1b[22;0;0t", b""), 1,
                         b"\x1b[?1049l\x1b[?1l\x1b[?1000l\x1b[?1006l\x1b7\x1b[r\x1b8\x1b[4l\x1b[?7h\x1b[?25h\x1b[0m"
                         b"\x1b(B\x0f\x1b>")


def test_shell_colours_and_a_progress_bar():
    shell = b"\x1b[01;34mdir\x1b[0m  file\r\n\x1b]0;user@host: ~\x07$ "
    assert run(shell) == (b"\x1b[01;34mdir\x1b[0m  file\r\n$ ", 1, b"\x1b[0m")
    progress = b"\r[##  ]  40%\x1b[K\r[### ]  75%\x1b[K\r[####] 100%\x1b[K\n"
    assert run(progress) == (progress, 0, b"")


# Titles.

def test_titles_pass_only_when_allowed_and_in_one_form():
    assert run(b"\x1b]0;my title\x07", allow_titles=True) == (b"\x1b]0;my title\x1b\\", 0, b"")
    assert run(b"\x1b]2;t\x1b\\", allow_titles=True) == (b"\x1b]2;t\x1b\\", 0, b"")
    assert run(b"\x1b]1;icon\xc2\x9c", allow_titles=True) == (b"\x1b]1;icon\x1b\\", 0, b"")
    assert run(b"\xc2\x9d2;" + "čau".encode() + b"\xc2\x9c", allow_titles=True) == (
        "\x1b]2;čau\x1b\\".encode(), 0, b"")
    assert run(b"\x1b]2;a\x01b\xc2\x85c\xff\x07", allow_titles=True) == (
        "\x1b]2;abc\ufffd\x1b\\".encode(), 0, b"")


def test_title_queries_and_other_oscs_stay_dropped_with_titles_allowed():
    for sequence in (b"\x1b]2;?\x07", b"\x1b]52;c;eA==\x07", b"\x1b]8;;http://a\x07", b"\x1b]02;x\x07",
                     b"\x1b]2\x07", b"\x1b]11;?\x1b\\"):
        assert run(sequence, allow_titles=True) == (b"", 1, b""), sequence


# Splitting.

MIXED = (b"start \xc4\x9b\xc2\xa9 \x1b[1;31mred\x1b[0m \x1b[c\x1b[>0c\x1b[6n\x1b[?1049h\x1b[?1000;1006h\x1b="
         b"\x1b]52;c;ZXZpbA==\x07\x1b]0;title\x1b\\\x1b]2;other\x07\x1bP$qm\x1b\\\x1b_Ga=q\x1b\\"
         b"\xc2\x9b6n\xc2\x9b32mgreen\xc2\x9d0;c1 title\xc2\x9c\xc2\x9a\x05\x1b(0lqk\x1b(B\x0e\x0f"
         b"\x1b[3\r1m\x1b[6\x18n\x1b\x1b[2J\x1b[10;20H\x1b7\x1b8\x1bZ\x1b[?25l\xc2\x1b[c\x9b\x1b[38:2::1:2:3m"
         b"\x1b[?2;25h\x1b[>4;2m\x1b[5 q\x1b[2;23r\x1b]4;1;?\x1b\\end\x1b[1")


@pytest.mark.parametrize("allow_titles", [False, True])
def test_split_at_every_position_gives_the_same_as_one_feed(allow_titles):
    whole = run(MIXED, allow_titles)
    for cut in range(len(MIXED) + 1):
        assert run_in_chunks([MIXED[:cut], MIXED[cut:]], allow_titles) == whole, cut
    assert run_in_chunks([MIXED[i:i + 1] for i in range(len(MIXED))], allow_titles) == whole


@pytest.mark.parametrize("prefix", [b"", b"?", b">", b"=", b"<"])
def test_every_csi_final_gives_the_same_whole_and_byte_by_byte(prefix):
    for final in range(0x40, 0x7F):
        for sequence in (b"\x1b[" + prefix + b"1" + bytes((final,)), b"\x1b[" + prefix + b"1;2 " + bytes((final,))):
            data = b"a" + sequence + b"\x1b[1mb" + sequence
            assert run_in_chunks([data[i:i + 1] for i in range(len(data))]) == run(data), sequence


def test_mixed_sample_exactly():
    output, dropped, resets = run(MIXED)
    assert output == (b"start \xc4\x9b\xc2\xa9 \x1b[1;31mred\x1b[0m \x1b[?1049h\x1b[?1000;1006h\x1b="
                      b"\x1b[32mgreen\x1b(0lqk\x1b(B\x0e\x0f\r\x1b[31m\x18n\x1b[2J\x1b[10;20H\x1b7\x1b8\x1b[?25l"
                      b"\xef\xbf\xbd\x9b\x1b[38:2::1:2:3m\x1b[?25h\x1b[>4;2m\x1b[5 q\x1b[2;23rend")
    assert dropped == 18  # the ESC [ 1 left at the end is counted by finish()
    assert resets == (b"\x1b[?1049l\x1b[?1000l\x1b[?1006l\x1b7\x1b[r\x1b8\x1b[?25h\x1b[0m\x1b(B\x0f\x1b>\x1b[0 q"
                      b"\x1b[>4m")
    titled, _, _ = run(MIXED, allow_titles=True)
    assert b"\x1b]0;title\x1b\\\x1b]2;other\x1b\\" in titled and b"\x1b]0;c1 title\x1b\\" in titled


# finish().

RESETS = [
    (b"\x1b[?1049h", b"\x1b[?1049l"), (b"\x1b[?47h", b"\x1b[?1047l"), (b"\x1b[?1047h", b"\x1b[?1047l"),
    (b"\x1b[?9h", b"\x1b[?9l"), (b"\x1b[?1000h", b"\x1b[?1000l"), (b"\x1b[?1001h", b"\x1b[?1001l"),
    (b"\x1b[?1002;1006h", b"\x1b[?1002l\x1b[?1006l"), (b"\x1b[?1003h", b"\x1b[?1003l"),
    (b"\x1b[?1005h", b"\x1b[?1005l"), (b"\x1b[?1015h", b"\x1b[?1015l"), (b"\x1b[?1016h", b"\x1b[?1016l"),
    (b"\x1b[?1004h", b"\x1b[?1004l"), (b"\x1b[?2004h", b"\x1b[?2004l"), (b"\x1b[?25l", b"\x1b[?25h"),
    (b"\x1b[?1h", b"\x1b[?1l"), (b"\x1b[?5h", b"\x1b[?5l"), (b"\x1b[?66h", b"\x1b[?66l"),
    (b"\x1b[?2026h", b"\x1b[?2026l"), (b"\x1b[?7l", b"\x1b[?7h"), (b"\x1b=", b"\x1b>"), (b"\x1b[8m", b"\x1b[0m"),
    (b"\x1b[1;31m", b"\x1b[0m"), (b"\xc2\x9b7m", b"\x1b[0m"), (b"\x1b(0", b"\x1b(B\x0f"),
    (b"\x1b)0\x0e", b"\x1b)B\x1b(B\x0f"), (b"\x1b[4h", b"\x1b[4l"), (b"\x1b[20h", b"\x1b[20l"),
    (b"\x1b[12l", b"\x1b[12h"), (b"\x1b[5;20r", b"\x1b7\x1b[r\x1b8"), (b"\x1b[5 q", b"\x1b[0 q"),
    (b"\x1b[>4;2m", b"\x1b[>4m"),
    (b"\x1b[?1000s\x1b[?1000r", b"\x1b[?1000l"), (b"\x1b[?1049l\x1b[?1049r", b"\x1b[?1049l\x1b[0m\x1b(B\x0f"),
    (b"\x1b[?6h", b"\x1b[?6l"), (b"\x1b[?6s\x1b[?6r", b"\x1b[?6l"), (b"\x1b[?12h", b"\x1b[?12l"),
    (b'\x1b[1"q', b'\x1b[0"q'), (b"\x1b[?69h", b"\x1b[?69l"),
]


@pytest.mark.parametrize("turn_on, reset", RESETS)
def test_finish_resets_what_was_left_on(turn_on, reset):
    output_filter = OutputFilter()
    output_filter.feed(turn_on)
    assert output_filter.finish() == reset
    assert output_filter.finish() == b""


def test_finish_resets_in_order():
    output_filter = OutputFilter()
    output_filter.feed(b"\x1b[?25l\x1b[?2004;1049;1000h\x1b[?7l\x1b[3;9r\x1b[4h\x1b[1m\x1b(0\x1b=\x1b[3 q\x1b[>4;2m"
                       b"\x1b[>1;1m")
    assert output_filter.finish() == (b"\x1b[?1049l\x1b[?1000l\x1b[?2004l\x1b7\x1b[r\x1b8\x1b[4l\x1b[?7h\x1b[?25h"
                                      b"\x1b[0m\x1b(B\x0f\x1b>\x1b[0 q\x1b[>1m\x1b[>4m")


TURNED_OFF_AGAIN = [  # touched counts, not the last value: the same resets as when left on
    (b"\x1b[?1049h\x1b[?47l", b"\x1b[?1047l"), (b"\x1b[?25l\x1b[?25h", b"\x1b[?25h"), (b"\x1b=\x1b>", b"\x1b>"),
    (b"\x1b[31m\x1b[0m", b"\x1b[0m"), (b"\x1b[31m\x1b[m", b"\x1b[0m"), (b"\x1b[31m\x1b[0;0m", b"\x1b[0m"),
    (b"\x1b(0\x1b(B", b"\x1b(B\x0f"), (b"\x0e\x0f", b"\x1b(B\x0f"), (b"\x1b)0\x1b(B", b"\x1b)B\x1b(B\x0f"),
    (b"\x1b[>4;2m\x1b[>4m", b"\x1b[>4m"), (b"\x1b[>4;2m\x1b[>m", b"\x1b[>4m"),
    (b"\x1b[5;20r\x1b[r", b"\x1b7\x1b[r\x1b8"),
    (b"\x1b[5 q\x1b[ q", b"\x1b[0 q"), (b"\x1b[4h\x1b[4l", b"\x1b[4l"), (b"\x1b[12l\x1b[12h", b"\x1b[12h"),
    (b"\x1b[?1000;1006h\x1b[?1006;1000l", b"\x1b[?1000l\x1b[?1006l"), (b"\x1b[?7l\x1b[?7h", b"\x1b[?7h"),
    # leaving with 1049 restores the attributes and character sets saved on entry
    (b"\x1b[?1049h\x1b[?1049l", b"\x1b[?1047l\x1b[0m\x1b(B\x0f"),
    # RIS is replaced by these resets, and does not make the filter forget
    (b"\x1b[?1049;1000;2004h\x1b[?25l\x1b=\x1b[1m\x1b(0\x1b[3;4r\x1bc",
     b"\x1b[?1047l\x1b[?1000l\x1b[?2004l\x1b7\x1b[r\x1b8\x1b[?25h\x1b[0m\x1b(B\x0f\x1b>"),
]


@pytest.mark.parametrize("data, resets", TURNED_OFF_AGAIN)
def test_finish_resets_what_was_turned_off_again_too(data, resets):
    assert run(data)[2] == resets


@pytest.mark.parametrize("data", [b"", b"text\r\n", b"\x1b[H\x1b[2J\x1b[10;5H", b"\x1b[?1048h\x1b[?3h", b"\x1b[?6l",
                                  b"\x1b[>m", b"\x1b[!p", b"\x1b7\x1b[s"])
def test_finish_is_empty_when_nothing_was_touched(data):
    assert run(data)[2] == b""


def test_finish_drops_an_incomplete_sequence():
    assert run(b"abc\x1b[1") == (b"abc", 0, b"")
    output_filter = OutputFilter()
    assert output_filter.feed(b"abc\x1b[1") == b"abc"
    assert output_filter.finish() == b""
    assert output_filter.dropped == 1
    output_filter = OutputFilter()
    assert output_filter.feed(b"\x1b]52;c;eA") == b""
    assert output_filter.finish() == b""
    assert output_filter.dropped == 1
    assert output_filter.feed(b"==\x07") == b"==\x07"  # the string was dropped: this is text now


# Bounds on what is held.

def test_a_long_title_is_not_held_past_the_bound():
    output_filter = OutputFilter(allow_titles=True)
    assert output_filter.feed(b"\x1b]0;") == b""
    for _ in range(100):
        assert output_filter.feed(b"x" * 1000) == b""
        assert len(output_filter._seq) <= STRING_LIMIT
    assert output_filter.feed(b"\x07after") == b"after"
    assert output_filter.dropped == 1


def test_dropped_strings_are_not_held_at_all():
    output_filter = OutputFilter()
    for start in (b"\x1b]52;c;", b"\x1bPq", b"\x1b_G"):
        assert output_filter.feed(start) == b""
        for _ in range(100):
            assert output_filter.feed(b"QUFB" * 1000) == b""
            assert len(output_filter._seq) == 0
        assert output_filter.feed(b"\x1b\\ok") == b"ok"
    assert output_filter.dropped == 3


def test_a_csi_longer_than_the_bound_is_dropped():
    too_long = b"\x1b[" + b"1;" * (CSI_LIMIT // 2) + b"1m"
    assert run(too_long + b"ok") == (b"ok", 1, b"")
    assert run_in_chunks([too_long[:10], too_long[10:] + b"ok"]) == (b"ok", 1, b"")
    longest = b"\x1b[" + b"1" * CSI_LIMIT + b"m"
    assert run(longest) == (longest, 0, b"\x1b[0m")
    assert run_in_chunks([longest[:10], longest[10:]]) == (longest, 0, b"\x1b[0m")


# Any input.

TOKENS = [b"\x1b", b"[", b"]", b"P", b"X", b"^", b"_", b"\\", b"?", b">", b"=", b"<", b"$", b"+", b"#", b" ", b"'",
          b"*", b'"', b"0", b"1", b"2", b"6", b"52", b"1049", b";", b":", b"c", b"n", b"t", b"x", b"q", b"u", b"p",
          b"m", b"h", b"l", b"r", b"s", b"Z", b"(", b")", b"%", b"\x07", b"\x18", b"\x1a", b"\x05", b"\x0e", b"\x0f",
          b"\r", b"\xc2", b"\x9b", b"\x9d", b"\x9c", b"\x90", b"\x9a", b"\x9e", b"\x9f", b"\x98", b"\xc4", b"\x7f",
          b"\x00", b"\x1b[", b"\x1b]", b"\xc2\x9b", b"\xc2\x9d", b"\x1b\\"]
STREAMS = st.one_of(st.binary(max_size=200),
                    st.lists(st.one_of(st.sampled_from(TOKENS), st.binary(max_size=6)), max_size=80).map(b"".join))


@settings(max_examples=400, deadline=None)
@given(STREAMS, st.booleans())
def test_any_bytes_give_a_clean_stream(data, allow_titles):
    output, dropped, resets = run(data, allow_titles)
    assert FORBIDDEN.search(output.replace(b"\x1b]0;", b"").replace(b"\x1b]1;", b"").replace(b"\x1b]2;", b"")
                            if allow_titles else output) is None
    if not allow_titles:
        assert b"\x1b]" not in output
    again = OutputFilter(allow_titles)
    assert again.feed(output) == output  # what passed is clean: filtering it again keeps all of it
    assert again.dropped == 0
    assert FORBIDDEN.search(resets) is None


@settings(max_examples=300, deadline=None)
@given(STREAMS, st.lists(st.integers(min_value=0, max_value=200), max_size=6), st.booleans())
def test_any_split_gives_the_same_as_one_feed(data, cuts, allow_titles):
    cuts = sorted(cut % (len(data) + 1) for cut in cuts)
    chunks = [data[start:stop] for start, stop in zip([0] + cuts, cuts + [len(data)])]
    assert run_in_chunks(chunks, allow_titles) == run(data, allow_titles)


@pytest.mark.parametrize("sequence", [
    b"\x1b[?3h",  # 132 columns: resizes the window
    b"\x1b[?40h", b"\x1b[?38h",  # allow 80/132, Tektronix mode
    b"\x1b[?67h",  # backspace sends ^H from then on
    b"\x1b[?1036l", b"\x1b[?1034h", b"\x1b[?1039l",  # the Meta key
    b"\x1b[?1046l", b"\x1b[?1050h", b"\x1b[?1053h",  # no alternate screen later; function key encodings
    b"\x1b[12;2]", b"\x1b[9;1]", b"\x1b[14;1]",  # the Linux console: switch VT, blanking, power-down
])
def test_modes_it_cannot_reset_and_console_sequences_are_dropped(sequence):
    assert run(b"a" + sequence + b"b") == (b"ab", 1, b"")


def test_a_mode_list_keeps_only_the_modes_it_can_reset():
    assert run(b"\x1b[?3;1049;67h") == (b"\x1b[?1049h", 1, b"\x1b[?1049l")
    assert run(b"\x1b[?12h\x1b[?1048h") == (b"\x1b[?12h\x1b[?1048h", 0, b"\x1b[?12l")
    assert run(b"\x1b[?3;25r") == (b"\x1b[?25r", 1, b"\x1b[?25h")


# Issue 18, finding 4: whatever the sandbox sent, the terminal is as it was before once it exits.

ALT_SCREEN = re.compile(rb"\x1b\[\?(?:47|1047|1049)[hl]")


def test_the_alternate_screen_is_left_at_exit_after_ris():
    """tmux keeps the alternate screen through RIS: the filter must not count on RIS, nor forget."""
    output_filter = OutputFilter()
    output = output_filter.feed(b"\x1b[?1049h\x1bc")
    resets = output_filter.finish()
    assert b"\x1bc" not in output
    assert ALT_SCREEN.findall(output + resets)[-1] in (b"\x1b[?1047l", b"\x1b[?1049l")
    assert ALT_SCREEN.findall(resets) == [b"\x1b[?1047l"]  # the exit resets leave it too, without moving the cursor


def test_ris_is_replaced_by_the_resets_and_a_cleared_screen():
    assert run(b"\x1b[?1000h\x1b[1mx\x1bcy") == (b"\x1b[?1000h\x1b[1mx\x1b[?1000l\x1b[0m\x1b[H\x1b[2Jy", 0,
                                                 b"\x1b[?1000l\x1b[0m")
    assert run(b"\x1b[?1049h\x1bc") == (b"\x1b[?1049h\x1b[?1049l\x1b[H\x1b[2J", 0, b"\x1b[?1047l")
    assert run(b"\xc2\x9a\xc2\x9bc\x1bc") == (b"\x1b[H\x1b[2J", 2, b"")


def test_decstr_is_replaced_by_the_resets_a_soft_reset_covers():
    """xterm's DECSTR resets the colour palette too, which the filter could not put back."""
    assert run(b"\x1b[1m\x1b[?25l\x1b[?1000h\x1b[!p") == (b"\x1b[1m\x1b[?25l\x1b[?1000h\x1b[?25h\x1b[0m", 0,
                                                          b"\x1b[?1000l\x1b[?25h\x1b[0m")
    assert run(b"a\x1b[!pb") == (b"ab", 0, b"")


@pytest.mark.parametrize("sequence", [b"\x1b[3g", b"\x1b[g", b"\x1b[0g", b"\x1b[5g", b"\x1bH", b"\xc2\x88",
                                      b"\x1b[?5W", b"\x1b[W", b"\x1b[2W", b"\x1b[5W"])
def test_tab_stops_cannot_be_changed(sequence):
    """The user's own tab stops stay: no ordinary program sets them, and the filter could only restore the
    default ones."""
    assert run(b"a" + sequence + b"\tb") == (b"a\tb", 1, b"")


@pytest.mark.parametrize("data", [b"\x1b[5;10r\x1bc", b"\x1b[5;10r\x1b[r", b"\x1b[5;10r\x1b[!p"])
def test_a_scroll_region_once_set_is_reset_at_exit(data):
    output, _, resets = run(data)
    assert b"\x1bc" not in output and b"\x1b[!p" not in output
    assert resets == b"\x1b7\x1b[r\x1b8"


@pytest.mark.parametrize("data, reset", [
    (b"\x1b(0\x1b7\x1b(B\x1b8", b"\x1b[0m\x1b(B\x0f"),  # DECRC brings the line-drawing set back
    (b"\x1b)0\x0e\x1b7\x0f\x1b8", b"\x1b[0m\x1b)B\x1b(B\x0f"),  # ... and the shift state
    (b"\x1b(0\x1bc", b"\x1b(B\x0f"),
    (b"\x1b(0\x1b(B", b"\x1b(B\x0f"),
    (b"\x1b[1m\x1b7\x1b[0m\x1b8", b"\x1b[0m\x1b(B\x0f"),  # ... and the attributes
    (b"\x1b[1m\x1b[s\x1b[0m\x1b[u", b"\x1b[0m\x1b(B\x0f"),
])
def test_charsets_and_attributes_once_changed_are_reset_at_exit(data, reset):
    assert run(data)[2] == reset


def test_what_was_touched_is_reset_even_if_turned_off_again():
    assert run(b"\x1b[?1000h\x1b[?1000l\x1b[?25l\x1b[?25h\x1b=\x1b>\x1b[4h\x1b[4l\x1b[5 q\x1b[ q")[2] == (
        b"\x1b[?1000l\x1b[4l\x1b[?25h\x1b>\x1b[0 q")


def test_resets_with_side_effects_only_when_the_state_may_be_on():
    """CSI ?1049 l restores the cursor saved on entry even on the main screen (xterm, tmux), and CSI ?6 l
    homes it: after a program that left the alternate screen itself, the exit resets must not move the
    cursor back over what it wrote since."""
    output_filter = OutputFilter()
    output_filter.feed(VIM_START + VIM_EXIT + b"line 1\r\nline 2\r\n")
    resets = output_filter.finish()
    assert b"\x1b[?1049l" not in resets and b"\x1b[?6l" not in resets
    assert ALT_SCREEN.findall(resets) == [b"\x1b[?1047l"]
    assert run(b"\x1b[?6l")[2] == b""
    assert run(b"\x1b[?6h\x1b[?6l")[2] == b"\x1b[?6l"


def test_the_cursor_style_and_blinking_are_reset_at_exit():
    assert run(b"\x1b[?12h\x1b[5 q")[2] == b"\x1b[0 q\x1b[?12l"


def test_the_protection_attribute_is_reset_at_exit():
    assert run(b'\x1b[1"q')[2] == b'\x1b[0"q'


def test_keyboard_leds_cannot_be_set():
    assert run(b"a\x1b[1qb\x1b[qc") == (b"abc", 2, b"")


# Large reads, as the relay makes them (up to 64 KiB): the fast path for text.

# Every byte that may stand in text as it is (all but ESC, ENQ, SO, SI and C2), the characters from U+0080 to
# U+00BF that are not C1 controls acted on (C2 A0 is a no-break space), and the tab, CR and LF of text.
PASSING = (bytes(b for b in range(256) if b not in b"\x05\x0e\x0f\x1b\xc2")
           + b"".join(b"\xc2" + bytes((b,)) for b in range(0x80, 0xC0)
                      if b not in b"\x88\x90\x96\x97\x98\x9a\x9b\x9c\x9d\x9e\x9f")
           + "° ± « » ½\u00a0· ěščř\t\r\n".encode())
PLAIN = PASSING * (64 * 1024 // len(PASSING))


def test_a_large_chunk_of_text_passes_byte_identical():
    big = PASSING * (1024 * 1024 // len(PASSING))
    assert run(big) == (big, 0, b"")
    assert run_in_chunks([big[i:i + 4095] for i in range(0, len(big), 4095)]) == (big, 0, b"")
    ascii_only = b"".join(b"%d\n" % n for n in range(300000))  # `seq 1 300000`: 2 MB
    output_filter = OutputFilter()
    assert output_filter.feed(ascii_only) is ascii_only  # passed on as it is, not even copied


def test_dangerous_sequences_in_a_large_chunk_are_all_removed():
    pieces = [PASSING * (n % 3 + 1) for n in range(len(DROPPED))]
    data = b"".join(piece + sequence for piece, sequence in zip(pieces, DROPPED)) + PLAIN
    text = b"".join(pieces) + PLAIN
    assert run(data) == (text, len(DROPPED), b"")
    for size in (4095, 65536):  # what one read of a pty gives, and what the relay asks for
        assert run_in_chunks([data[i:i + size] for i in range(0, len(data), size)]) == (text, len(DROPPED), b"")


@pytest.mark.parametrize("sequence", [b"\x1b]52;c;ZXZpbA==\x07", b"\x1b]52;c;ZXZpbA==\x1b\\", b"\x1bP$qm\x1b\\",
                                      b"\x1b[6n", b"\x1b[?1049h", b"\x1b[31m", b"\x1bc", b"\x05", b"\xc2\x9b6n",
                                      b"\xc2\x9d52;c;eA==\xc2\x9c", b"\xc2\xa0", b"\x1b]0;title\x07"])
def test_a_sequence_split_anywhere_between_large_chunks_is_filtered_as_whole(sequence):
    data = PLAIN + sequence + PLAIN
    whole = run(data)
    if b"\x1b]0;" not in sequence:
        assert FORBIDDEN.search(whole[0]) is None
    start = len(PLAIN)
    for cut in range(start - 1, start + len(sequence) + 2):
        assert run_in_chunks([data[:cut], data[cut:]]) == whole, cut
    byte_by_byte = [data[:start]] + [sequence[i:i + 1] for i in range(len(sequence))] + [PLAIN]
    assert run_in_chunks(byte_by_byte) == whole


def test_text_read_while_a_string_is_open_is_not_passed():
    """An OSC (or DCS) left open at the end of one read swallows the next reads, however plain, to its end."""
    payload = b"ZXZpbA==" * (65536 // 8)  # text the fast path would pass in ground state
    for opening, closing in ((b"\x1b]52;c;", b"\x07"), (b"\x1bP$q", b"\x1b\\"), (b"\xc2\x9d52;c;", b"\xc2\x9c")):
        assert run_in_chunks([b"before" + opening, payload, payload, closing + b"after"]) == (b"beforeafter", 1, b"")
