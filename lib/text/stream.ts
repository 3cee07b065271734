/**
 * Streaming text out of generated token ids without ever printing half a character.
 *
 * A token may end inside a UTF-8 sequence (a byte-level BPE piece, or a `<0xE2>` byte-fallback token), and
 * some decoders act on the start of the text they are given (Llama-2's Strip removes the first space only),
 * so decoding token by token is wrong. The ids are decoded in a window, ids[from..]: after each id the window
 * is decoded whole, and what it adds past the text of the window already printed is printed, up to, not
 * including, a trailing run of U+FFFD (what an incomplete UTF-8 sequence decodes to). When the window's text
 * ends on a whole character, the next window starts at its last id, whose text is then the window's printed
 * text: both are decoded from the same first id, so a decoder's treatment of the start is the same in both
 * (the difference Hugging Face's TextStreamer and TGI take). Each id costs a decode of a few ids, not of
 * everything so far. `end()` prints the rest, replacement characters included (bytes that never completed a
 * character), and returns the decode of all ids.
 */
export class TextStream {
  private readonly ids: number[] = [];
  /** the window's first id */
  private from = 0;
  /** the text of ids[from..] already printed */
  private shown = '';

  constructor(
    private readonly decode: (ids: number[]) => string,
    private readonly write: (text: string) => void,
  ) {}

  push(id: number): void {
    this.ids.push(id);
    const text = this.decode(this.ids.slice(this.from));
    const whole = text.replace(/\uFFFD+$/u, '');
    this.emit(whole);
    if (whole.length === text.length && this.shown === text) {
      this.from = this.ids.length - 1;
      this.shown = this.decode(this.ids.slice(this.from));
    }
  }

  /** Print what is left; returns the whole text. */
  end(): string {
    this.emit(this.decode(this.ids.slice(this.from)));
    return this.decode(this.ids);
  }

  private emit(text: string): void {
    if (text.length > this.shown.length && text.startsWith(this.shown)) {
      this.write(text.slice(this.shown.length));
      this.shown = text;
    }
  }
}
