"""Filter a sandboxed command's pty output before the relay writes it to the user's real terminal.

Why: the user's terminal is outside the sandbox. Escape sequences written by a hostile program reach it
unchanged, and some of them act outside the sandbox: set the clipboard, retitle the window, resize it, or
make the terminal answer a query by typing the answer as keyboard input (into the sandbox, which leaks
what the terminal knows, or, when the answer arrives after the command exits, into the user's shell).
Others leave the terminal changed after the command ends (alternate screen, mouse reporting, a hidden
cursor, cleared tab stops). The filter is a state machine for the ECMA-48 / xterm grammar, so it splits
the stream the way the terminal does; it passes text and harmless sequences, drops the rest, replaces the
two resets, and finish() puts back every kind of state the command touched.

Dropped (each one counts in OutputFilter.dropped):
  - every OSC (clipboard 52, colour sets and queries 4/10-19/104/110-119, cwd 7, notifications 777/9,
    iTerm 1337, fonts 50, hyperlinks 8, which can show one address and open another) except the window
    and icon titles 0/1/2 when allow_titles=True; a title "?" is dropped, a kept title has its control
    characters removed and is re-sent in one canonical form.
  - every DCS (DECRQSS $q and XTGETTCAP +q answer back; DECUDK reprograms function keys to type text into
    the user's shell later; DECDLD soft fonts can redraw letters; tmux passthrough would hand the outer
    terminal an unfiltered sequence). Sixel images are dropped too: recognising them needs trusting the
    parameters and the terminal's image decoder, and programs fall back to text when their probe of sixel
    support (a query) gets no answer. SOS, PM and APC (kitty graphics, with its own queries) are dropped.
  - CSI queries and window operations: final c (DA1/DA2/DA3), n (DSR, cursor position), t (window ops,
    title reports), x (DECREQTPARM), y (DECTST, DECRQCRA, which reads back screen contents), i (media copy:
    printer controller mode), q (DECLL: keyboard LEDs); with a prefix, all but "?" h l s r J K and ">" m
    (XTVERSION >q, kitty keyboard ?u >u =u <u, XTQMODKEYS ?m, XTSMGRAPHICS ?S ...); with intermediates,
    all but SP q (cursor style), SP @, SP A, !p (soft reset, replaced), "q, $r, $v, $z, ${, '}, '~ (DECRQM
    $p, DECRQTSR $u, DECRQPSR $w, DECSCL "p, DECSR +p, DECRQDE "v, locator 'w 'z '{ '|, XTREPORTSGR #|,
    status line $} $~, resizes $| *|). Malformed CSIs and ones longer than CSI_LIMIT are dropped whole.
  - tab stops: TBC (CSI g), CTC (CSI W), DECST8C (CSI ? 5 W), HTS (ESC H, U+0088). At exit the filter
    could only set the default stops again, not the user's own (`tabs -4`); and no ordinary program
    changes them (tabs(1), and reset(1), which sets the default ones).
  - from the mode lists of SM/RM and DECSET/DECRST: mode 2 (KAM locks the keyboard; DECANM reset switches
    to VT52 parsing, which this filter does not follow). Modes with ":" or numbers over 65535 (which a
    terminal could wrap around) drop the whole sequence.
  - ESC sequences other than ESC 7 8 = > D E M c, ESC ( F, ESC ) F and ESC # 3/4/5/6/8: ESC Z (DECID,
    a query like DA), ESC % (leaving UTF-8 would make raw 8-bit bytes into controls the filter passes),
    ESC SP F/G (C1 transmission), locking shifts ESC n o | } ~, single shifts, G2/G3 designations, SPA
    and EPA (ESC V W, U+0096 U+0097: a protected area, which erasing then skips).
  - ENQ (0x05, the answerback), a stray ST, and incomplete sequences cut by CAN, SUB, ESC or a non-ASCII
    byte (CAN and SUB themselves pass, as in text; control characters inside a sequence pass before it,
    since the terminal executes them where they stand).

Replaced: RIS (ESC c) and DECSTR (CSI ! p) reset what the filter cannot put back (xterm resets the
user's colour palette with either, tmux with RIS; RIS resets the tab stops and xterm's menu settings), and
terminals differ in what they reset (tmux stays on the alternate screen through RIS). RIS becomes the
resets finish() would send and a cleared screen, DECSTR the ones of those a soft reset covers.

Kept: text, C0 controls (BS, HT, LF, CR, BEL, SO, SI ...), SGR colours of every kind, cursor movement,
erasing, scroll regions and scrolling (S, T), DECSET/DECRST and SM/RM modes, ESC 7/8/M/D/E/=/>,
charset designations for G0/G1, modifyOtherKeys (CSI > Pp ; Pv m), cursor style.

Reset by finish(), for every kind of state the command touched (set or reset: a terminal may not see the
state as the filter does, and DECRC restores attributes and character sets), whatever it did later; RIS
does not make the filter forget: DEC private modes 1 (cursor keys), 5 (reverse video), 9/1000-1003/1005/
1006/1015/1016 (mouse), 1004 (focus events), 2004 (bracketed paste), 66 (keypad), 69 (left/right margins),
2026 (synchronized output), 2031/2048 (theme and resize reports), 9001 (win32 input), 12 (cursor blinking)
off; SM/RM 4 (insert) and 20 (newline) off, 12 (no local echo) on; 7 (autowrap), 8 (autorepeat), 25
(cursor shown) on; the scroll region (inside ESC 7 / ESC 8 so the cursor stays); SGR; DECSCA; G0, G1 and
the shift state ("ESC ) B ESC ( B SI"; G2 and G3 cannot be changed); the numeric keypad after ESC = or
ESC >; the default cursor style; modifyOtherKeys and its siblings. Two resets move the cursor, so they go
out only when the state may be on: origin mode 6 (its reset homes the cursor) once it was set, and
CSI ? 1049 l (which restores the cursor saved on entry even on the main screen) while on the alternate
screen entered with it; once touched otherwise, the alternate screen is left with CSI ? 1047 l, which
changes nothing on the main screen. Modes restored by XTRESTORE (CSI ? Pm r) count as turned on.

The 7-bit introducers and the UTF-8 encoded C1 ones (C2 90 DCS, C2 98 SOS, C2 9B CSI, C2 9D OSC, C2 9E PM,
C2 9F APC, C2 9A DECID, C2 9C ST; C2 88 HTS, C2 96 SPA, C2 97 EPA) are both recognised: some terminals act
on U+009B. Kept sequences always go out in the 7-bit form. A lone 8-bit byte is a UTF-8 continuation byte
(the 9B of "ě", C4 9B), not a control: it passes. A C2 not followed by a continuation byte goes out as
U+FFFD, so dropping what follows it cannot glue it to a later 9B. This assumes a UTF-8 terminal whose
decoder rejects overlong encodings.
"""

import functools
import re

STRING_LIMIT = 64 * 1024  # the longest OSC kept for a title; longer strings are still skipped to their end
CSI_LIMIT = 4096  # the longest CSI body (parameters and intermediates) kept

# A chunk with none of these (and no sequence pending) passes as it is: `in` finds a byte at memchr's
# speed, many times faster than a regular expression's scan.
_SPECIAL = (b"\x1b", b"\xc2", b"\x05", b"\x0e", b"\x0f")
# The second byte of a UTF-8 C1 control acted on, as the byte that follows ESC in its 7-bit form.
_C1_AS_ESCAPE = {0x88: ord("H"), 0x90: ord("P"), 0x96: ord("V"), 0x97: ord("W"), 0x98: ord("X"), 0x9A: ord("Z"),
                 0x9B: ord("["), 0x9C: ord("\\"), 0x9D: ord("]"), 0x9E: ord("^"), 0x9F: ord("_")}
# What passes in ground state without a closer look: text without special bytes, the characters from U+0080
# to U+00BF that are not C1 controls acted on (C2 80 to C2 BF but those of _C1_AS_ESCAPE: "°", "±", "«",
# a no-break space), and CSIs without prefix or intermediates whose final is kept and changes no state but
# SGR (every final but c g h i l n q r t u W x y ]). _after_c2 and _dispatch_csi would pass all of them
# unchanged.
# No possessive quantifiers: Python 3.11.2 (Debian 12's) mismatches them. match() takes the first greedy
# success, so nothing backtracks here anyway.
_PLAIN_RUN = re.compile(rb"(?:[^\x05\x0e\x0f\x1b\xc2]+|\xc2[%s]|\x1b\[[0-9:;]{0,%d}"
                        rb"[\x40-\x56\x58-\x5c\x5e-\x62\x64-\x66\x6a\x6b\x6d\x6f\x70\x73\x76\x77\x7a-\x7e])*"
                        % (b"".join(re.escape(bytes((byte,))) for byte in range(0x80, 0xC0)
                                    if byte not in _C1_AS_ESCAPE), CSI_LIMIT))
# An SGR in such a run.
_SGR_IN_RUN = re.compile(rb"\x1b\[[0-9:;]*m")
# A complete and valid CSI: one private prefix at most, then parameters, then intermediates, then the final.
_WHOLE_CSI = re.compile(rb"\x1b\[([<=>?]?)([0-9:;]*)([ -/]*)([@-~])")
# The bytes that end or interrupt a string (OSC, DCS, SOS, PM, APC).
_STRING_SPECIAL = re.compile(rb"[\x07\x18\x1a\x1b\xc2]")

_GROUND, _GROUND_C2, _ESC, _CSI, _CSI_IGNORE, _STRING, _STRING_ESC, _STRING_C2 = range(8)

_REPLACEMENT = "\ufffd".encode()
_ESCAPE_KEPT = frozenset(b"78=>DEM")  # and c (RIS), replaced
_LINE_SIZE_KEPT = frozenset(b"34568")  # ESC # F: double height/width lines, DECALN
# "]": the Linux console's own (switch VT, blanking, ...); g, W: tab stops (TBC, CTC); q: keyboard LEDs (DECLL)
_CSI_DROPPED_FINALS = frozenset(b"cntxyi]gWq")
_CSI_KEPT_WITH_PREFIX = frozenset([(b"?", final) for final in b"hlsrJK"] + [(b">", ord("m"))])
_CSI_KEPT_WITH_INTERMEDIATE = frozenset([b" q", b" @", b" A", b"!p", b'"q', b"$r", b"$v", b"$z", b"${",
                                         b"'}", b"'~"])
_MODES_NEVER_PASSED = frozenset([2])
# Modes that finish() resets, with the value a terminal starts with (True: set).
_DEC_MODE_DEFAULTS = {1: False, 5: False, 6: False, 7: True, 8: True, 9: False, 12: False, 25: True, 47: False,
                      66: False, 69: False, 1000: False, 1001: False, 1002: False, 1003: False, 1004: False,
                      1005: False, 1006: False, 1015: False, 1016: False, 1047: False, 1049: False, 2004: False,
                      2026: False, 2031: False, 2048: False, 9001: False}
_ALT_SCREEN_MODES = (47, 1047, 1049)
_ANSI_MODE_DEFAULTS = {4: False, 12: True, 20: False}
# DEC modes that pass without a reset at exit: 1048 saves and restores the cursor (DECSC, DECRC).
_DEC_MODES_HARMLESS = frozenset([1048])
# An allow-list: only the modes finish() knows how to reset pass (not 132 columns, Tektronix mode, key
# encodings, the Meta key, ...); KAM (2) locks the keyboard and is never among them.
_DEC_MODES_PASSED = (_DEC_MODE_DEFAULTS.keys() | _DEC_MODES_HARMLESS) - _MODES_NEVER_PASSED
_ANSI_MODES_PASSED = _ANSI_MODE_DEFAULTS.keys() - _MODES_NEVER_PASSED


@functools.cache  # a terminal program sends the same few modes again and again
def _mode_reset(mode: int, private: bool = True) -> bytes:
    default = (_DEC_MODE_DEFAULTS if private else _ANSI_MODE_DEFAULTS)[mode]
    return b"\x1b[%s%d%s" % (b"?" if private else b"", mode, b"h" if default else b"l")


# The resets finish() sends for each kind of state the sandbox touched, to the value a terminal starts with.
_LEAVE_ALT_SCREEN = b"\x1b[?1047l"  # neither moves the cursor nor does anything on the main screen
_LEAVE_ALT_SCREEN_1049 = b"\x1b[?1049l"  # restores the cursor saved on entry: only if entered so
_SCROLL_REGION = b"\x1b7\x1b[r\x1b8"  # CSI r homes the cursor too: ESC 7 / ESC 8 keep it where it is
_SGR = b"\x1b[0m"
_PROTECTION = b'\x1b[0"q'  # DECSCA
_G1 = b"\x1b)B"
_G0_AND_SHIFT = b"\x1b(B\x0f"  # G2 and G3 need none: the sandbox cannot designate or invoke them
_KEYPAD = b"\x1b>"
_CURSOR_STYLE = b"\x1b[0 q"
# In the order finish() sends them. The alternate screen is left first: CSI ?1049 l restores the cursor with
# its attributes, character sets and origin mode (DECRC). Origin mode (6) is reset before the scroll region,
# whose ESC 8 would restore it. Cursor blinking (12) last: xterm's CSI 0 SP q (default style) turns it on.
_RESET_ORDER = ([_LEAVE_ALT_SCREEN]
                + [_mode_reset(mode) for mode, on in sorted(_DEC_MODE_DEFAULTS.items())
                   if not on and mode not in _ALT_SCREEN_MODES and mode != 12]
                + [_SCROLL_REGION] + [_mode_reset(mode, private=False) for mode in sorted(_ANSI_MODE_DEFAULTS)]
                + [_mode_reset(mode) for mode, on in sorted(_DEC_MODE_DEFAULTS.items()) if on]
                + [_SGR, _PROTECTION, _G1, _G0_AND_SHIFT, _KEYPAD, _CURSOR_STYLE, _mode_reset(12)])
# What a soft reset (DECSTR) resets, so what replaces it.
_SOFT_RESETS = frozenset([_mode_reset(mode) for mode in (1, 6, 7, 12, 25, 66, 69)]
                         + [_mode_reset(4, private=False), _SCROLL_REGION, _SGR, _PROTECTION, _G1, _G0_AND_SHIFT,
                            _KEYPAD, _CURSOR_STYLE])
_CONTROL_CHARACTERS = dict.fromkeys([*range(0x20), *range(0x7F, 0xA0)])


class OutputFilter:
    """Feed it the command's output in any chunks; it returns what is safe to write to the user's terminal."""

    def __init__(self, allow_titles: bool = False):
        self.allow_titles = allow_titles
        self.dropped = 0
        self._state = _GROUND
        self._seq = bytearray()  # the sequence being read: ESC intermediates, CSI body or title OSC text
        self._string_is_osc = False
        self._keep_string = False  # an OSC that may turn out to be a title to pass
        # What the sandbox touched (set, reset, or may have changed: DECRC restores attributes), as the
        # resets that put it back. Never forgotten: the filter cannot follow every terminal's idea of the
        # state, so finish() resets every kind of state touched, not only what looks changed.
        self._touched: set[bytes] = set()
        self._modify_keys: set[int] = set()  # XTMODKEYS resources touched
        self._in_1049 = False  # on the alternate screen entered with CSI ?1049 h (or maybe, after XTRESTORE)

    def feed(self, data: bytes) -> bytes:
        """The part of data safe to pass on; an incomplete sequence at the end waits for the next chunk."""
        data = bytes(data)
        if self._state == _GROUND and not any(byte in data for byte in _SPECIAL):
            return data
        out: list[bytes] = []
        pos, end = 0, len(data)
        while pos < end:
            if self._state == _GROUND:
                pos = self._ground(data, pos, out)
            elif self._state == _STRING:
                pos = self._string(data, pos, out)
            elif self._byte(data[pos], out):
                pos += 1
        return b"".join(out)

    def finish(self) -> bytes:
        """At exit: drop an incomplete sequence, and return the resets for every kind of state touched."""
        out = []
        if self._state == _GROUND_C2:
            out.append(_REPLACEMENT)
        elif self._state not in (_GROUND, _CSI_IGNORE):
            self.dropped += 1
        self._state = _GROUND
        self._seq.clear()
        out += self._resets()
        self._touched.clear()
        self._modify_keys.clear()
        self._in_1049 = False
        return b"".join(out)

    def _resets(self, soft: bool = False) -> list[bytes]:
        """The resets for every kind of state touched (soft: only those DECSTR covers)."""
        touched = self._touched & _SOFT_RESETS if soft else self._touched
        resets = [reset for reset in _RESET_ORDER if reset in touched]
        if self._in_1049 and not soft:
            resets[0] = _LEAVE_ALT_SCREEN_1049  # in place of _LEAVE_ALT_SCREEN (touched by entering)
        return resets + [b"\x1b[>%dm" % resource for resource in sorted(self._modify_keys)]

    def _full_reset(self) -> bytes:
        """What replaces RIS (see the module's docstring): the exit resets, then a cleared screen."""
        resets = self._resets()
        self._in_1049 = False
        return b"".join(resets) + b"\x1b[H\x1b[2J"

    # Ground state and the bytes that leave it.

    def _ground(self, data: bytes, pos: int, out: list[bytes]) -> int:
        stop = _PLAIN_RUN.match(data, pos).end()
        if stop > pos:
            out.append(data[pos:stop])
            if _SGR not in self._touched and _SGR_IN_RUN.search(data, pos, stop):
                self._touched.add(_SGR)
            return stop
        byte = data[pos]
        if byte == 0x1B:
            whole = _WHOLE_CSI.match(data, pos)
            if whole is None:
                self._state = _ESC
                return pos + 1
            if whole.end() - pos - 3 > CSI_LIMIT:
                self.dropped += 1
            else:
                self._dispatch_csi(whole[1], whole[2], whole[3], whole[4][0], out)
            return whole.end()
        if byte == 0xC2:
            if pos + 1 == len(data):
                self._state = _GROUND_C2
                return pos + 1
            if self._after_c2(data[pos + 1], out):
                return pos + 2
            return pos + 1
        self._control(byte, out)
        return pos + 1

    def _after_c2(self, byte: int, out: list[bytes]) -> bool:
        """Act on the byte after a C2; whether it was used up (False: it goes through ground again)."""
        if byte in _C1_AS_ESCAPE:
            self._state = _ESC
            self._escape_byte(_C1_AS_ESCAPE[byte], out)
            return True
        if 0x80 <= byte <= 0xBF:
            out.append(bytes((0xC2, byte)))  # a character from U+0080 to U+00BF
            return True
        out.append(_REPLACEMENT)  # C2 starts no character here; a lone C2 could glue onto a later 9B
        return False

    def _control(self, byte: int, out: list[bytes]) -> None:
        """A C0 control in text or inside a sequence, where the terminal executes it."""
        if byte == 0x05:
            self.dropped += 1  # ENQ: the terminal would type its answerback message
            return
        if byte in (0x0E, 0x0F):  # SO, SI
            self._touched.add(_G0_AND_SHIFT)
        out.append(bytes((byte,)))

    # ESC and CSI sequences, a byte at a time.

    def _byte(self, byte: int, out: list[bytes]) -> bool:
        """One byte in a state other than ground and string; whether it was used up."""
        state = self._state
        if state == _GROUND_C2:
            self._state = _GROUND
            return self._after_c2(byte, out)
        if state == _STRING_ESC:
            if byte == 0x5C:
                self._end_string(out)
                return True
            self._drop_string()
            self._state = _ESC  # the ESC ended the string and starts a sequence of its own
            return False
        if state == _STRING_C2:
            if byte == 0x9C:
                self._end_string(out)
                return True
            self._state = _STRING
            self._collect(b"\xc2")
            return False
        if byte < 0x20 or byte >= 0x7F:
            return self._control_in_sequence(byte, out)
        if state == _ESC:
            self._escape_byte(byte, out)
        elif state == _CSI:
            self._csi_byte(byte, out)
        elif byte >= 0x40:  # _CSI_IGNORE: the final byte ends it
            self._state = _GROUND
        return True

    def _control_in_sequence(self, byte: int, out: list[bytes]) -> bool:
        if byte == 0x7F:
            return True  # DEL is ignored inside sequences
        if byte >= 0x80:
            self._abort()
            return False
        if byte == 0x1B:
            self._abort()
            self._state = _ESC
        elif byte in (0x18, 0x1A):
            self._abort()
            out.append(bytes((byte,)))
        else:
            self._control(byte, out)
        return True

    def _abort(self) -> None:
        if self._state != _CSI_IGNORE:  # an ignored CSI was counted when it overflowed
            self.dropped += 1
        self._state = _GROUND
        self._seq.clear()

    def _escape_byte(self, byte: int, out: list[bytes]) -> None:
        seq = self._seq
        if byte < 0x30:
            if len(seq) < 2:  # two intermediates already make it a sequence this filter drops
                seq.append(byte)
            return
        if not seq:
            if byte == 0x5B:
                self._state = _CSI
                return
            if byte in b"]PX^_":
                self._start_string(osc=byte == 0x5D)
                return
        intermediates = bytes(seq)
        seq.clear()
        self._state = _GROUND
        sequence = self._escape(intermediates, byte)
        if sequence is None:
            self.dropped += 1
        else:
            out.append(sequence)

    def _escape(self, intermediates: bytes, final: int) -> bytes | None:
        """What to pass for an ESC sequence (None: drop it), noting what it changes."""
        if not intermediates:
            if final == 0x63:
                return self._full_reset()
            if final not in _ESCAPE_KEPT:
                return None
            if final in b"=>":
                self._touched.add(_KEYPAD)
            elif final == 0x38:
                self._note_cursor_restored()
        elif intermediates in (b"(", b")"):
            self._touched.add(_G0_AND_SHIFT if intermediates == b"(" else _G1)
        elif intermediates != b"#" or final not in _LINE_SIZE_KEPT:
            return None
        return b"\x1b" + intermediates + bytes((final,))

    def _csi_byte(self, byte: int, out: list[bytes]) -> None:
        seq = self._seq
        if byte < 0x40:
            if len(seq) < CSI_LIMIT:
                seq.append(byte)
            else:
                self.dropped += 1
                seq.clear()
                self._state = _CSI_IGNORE
            return
        self._state = _GROUND
        whole = _WHOLE_CSI.fullmatch(b"\x1b[" + seq + bytes((byte,)))
        seq.clear()
        if whole is None:
            self.dropped += 1
        else:
            self._dispatch_csi(whole[1], whole[2], whole[3], byte, out)

    def _dispatch_csi(self, prefix: bytes, params: bytes, intermediates: bytes, final: int,
                      out: list[bytes]) -> None:
        """Pass, replace or drop one complete CSI, noting the state it changes."""
        if intermediates:
            kept = not prefix and intermediates + bytes((final,)) in _CSI_KEPT_WITH_INTERMEDIATE
        elif prefix:
            kept = (prefix, final) in _CSI_KEPT_WITH_PREFIX
        else:
            kept = final not in _CSI_DROPPED_FINALS
        sequence = b"\x1b[" + prefix + params + intermediates + bytes((final,)) if kept else None
        if sequence is not None and not intermediates:
            if final in b"hl":
                sequence = self._note_modes(prefix, params, final == 0x68, sequence)
            elif final == 0x6D:
                if prefix:
                    sequence = self._note_modify_keys(params, sequence)
                else:
                    self._touched.add(_SGR)
            elif final == 0x72:
                if prefix:
                    sequence = self._note_restored_modes(params, sequence)
                else:
                    self._touched.add(_SCROLL_REGION)
            elif final == 0x75:
                self._note_cursor_restored()  # SCORC
        elif sequence is not None:
            if intermediates == b" " and final == 0x71:
                self._touched.add(_CURSOR_STYLE)  # DECSCUSR
            elif intermediates == b'"':
                self._touched.add(_PROTECTION)  # DECSCA
            elif intermediates == b"!":
                # DECSTR: xterm's resets the colour palette too, which the filter could not put back
                sequence = b"".join(self._resets(soft=True))
        if sequence is None:
            self.dropped += 1
        else:
            out.append(sequence)

    # What the kept sequences change, for finish().

    def _note_cursor_restored(self) -> None:
        """DECRC and its kin restore the attributes and character sets saved with the cursor."""
        self._touched.update((_SGR, _G0_AND_SHIFT))

    def _note_modes(self, prefix: bytes, params: bytes, turned_on: bool, sequence: bytes) -> bytes | None:
        """SM/RM or DECSET/DECRST: the sequence to pass, without the modes never passed."""
        numbers = _numbers(params)
        if numbers is None:
            return None
        allowed = _DEC_MODES_PASSED if prefix else _ANSI_MODES_PASSED
        kept = [number for number in numbers if number in allowed]
        if not kept:
            return None
        for mode in kept:
            if prefix:
                self._note_dec_mode(mode, turned_on)
            else:
                self._touched.add(_mode_reset(mode, private=False))
        if len(kept) == len(numbers):
            return sequence
        self.dropped += 1  # the modes taken out of the list
        return b"\x1b[" + prefix + b";".join(b"%d" % number for number in kept) + (b"h" if turned_on else b"l")

    def _note_dec_mode(self, mode: int, turned_on: bool) -> None:
        if mode in (1048, 1049) and not turned_on:
            self._note_cursor_restored()
        if mode in _ALT_SCREEN_MODES:
            self._touched.add(_LEAVE_ALT_SCREEN)
            self._in_1049 = turned_on and (self._in_1049 or mode == 1049)  # leaving with any of them leaves
        elif mode in _DEC_MODE_DEFAULTS and (turned_on or mode != 6):
            self._touched.add(_mode_reset(mode))  # origin mode only once set: its reset homes the cursor

    def _note_restored_modes(self, params: bytes, sequence: bytes) -> bytes | None:
        """XTRESTORE may turn on any of the modes it names: they count as turned on."""
        numbers = _numbers(params)
        if numbers is None:
            return None
        kept = [mode for mode in numbers if mode in _DEC_MODE_DEFAULTS]
        if not kept:
            return None
        for mode in kept:
            self._note_dec_mode(mode, turned_on=True)
        if len(kept) == len(numbers):
            return sequence
        self.dropped += 1
        return b"\x1b[?" + b";".join(b"%d" % mode for mode in kept) + b"r"

    def _note_modify_keys(self, params: bytes, sequence: bytes) -> bytes | None:
        """CSI > Pp ; Pv m sets resource Pp (modifyOtherKeys is 4), without Pv resets it; without Pp it resets
        all of them (none to note)."""
        numbers = _numbers(params)
        if numbers is None:
            return None
        if params:
            self._modify_keys.add(numbers[0])
        return sequence

    # Strings: OSC, DCS, SOS, PM, APC.

    def _start_string(self, osc: bool) -> None:
        self._state = _STRING
        self._string_is_osc = osc
        self._keep_string = osc and self.allow_titles
        self._seq.clear()

    def _string(self, data: bytes, pos: int, out: list[bytes]) -> int:
        found = _STRING_SPECIAL.search(data, pos)
        stop = len(data) if found is None else found.start()
        if self._keep_string and stop > pos:
            self._collect(data[pos:stop])
        if found is None:
            return stop
        byte = data[stop]
        if byte == 0x1B:
            self._state = _STRING_ESC
        elif byte == 0xC2:
            self._state = _STRING_C2
        elif byte == 0x07:
            if self._string_is_osc:
                self._end_string(out)  # xterm ends an OSC with BEL as well as ST
        else:  # CAN, SUB
            self._drop_string()
            out.append(bytes((byte,)))
        return stop + 1

    def _collect(self, chunk: bytes) -> None:
        if self._keep_string:
            self._seq += chunk
            if len(self._seq) > STRING_LIMIT:
                self._keep_string = False  # skip the rest to its end, without holding it
                self._seq.clear()

    def _end_string(self, out: list[bytes]) -> None:
        title = self._title() if self._keep_string else None
        self._state = _GROUND
        self._seq.clear()
        if title is None:
            self.dropped += 1
        else:
            out.append(title)

    def _drop_string(self) -> None:
        self._state = _GROUND
        self._seq.clear()
        self.dropped += 1

    def _title(self) -> bytes | None:
        number, separator, text = bytes(self._seq).partition(b";")
        if number not in (b"0", b"1", b"2") or not separator or text == b"?":
            return None
        shown = text.decode("utf-8", "replace").translate(_CONTROL_CHARACTERS).encode()
        return b"\x1b]" + number + b";" + shown + b"\x1b\\"


def _numbers(params: bytes) -> list[int] | None:
    """The numbers of a mode list (an empty one is 0), or None if one is not a plain number below 65536."""
    if params.isdigit() and len(params) <= 5:  # the usual: one mode
        number = int(params)
        return [number] if number <= 65535 else None
    numbers = []
    for part in params.split(b";"):
        if part and (not part.isdigit() or len(part.lstrip(b"0")) > 5 or int(part) > 65535):
            return None
        numbers.append(int(part or b"0"))
    return numbers
