/**
 * Streaming text out of generated token ids without ever printing half a character.
 *
 * A token may end inside a UTF-8 sequence (a byte-level BPE piece, or a `<0xE2>` byte-fallback token), and
 * some decoders act on the whole text (Llama-2's Strip removes the first space only), so decoding token by
 * token is wrong. After each id the ids so far are decoded as a whole; the text is printed up to, not
 * including, a trailing run of U+FFFD (what an incomplete UTF-8 sequence decodes to), and only what extends
 * the text already printed. `end()` prints the rest, replacement characters included (bytes that never
 * completed a character).
 */
export class TextStream {
  private readonly ids: number[] = [];
  private printed = '';

  constructor(
    private readonly decode: (ids: number[]) => string,
    private readonly write: (text: string) => void,
  ) {}

  push(id: number): void {
    this.ids.push(id);
    this.emit(this.decode(this.ids).replace(/\uFFFD+$/u, ''));
  }

  /** Print what is left; returns the whole text. */
  end(): string {
    const text = this.decode(this.ids);
    this.emit(text);
    return text;
  }

  private emit(text: string): void {
    if (text.length > this.printed.length && text.startsWith(this.printed)) {
      this.write(text.slice(this.printed.length));
      this.printed = text;
    }
  }
}
