package dev.tfner.client;

/**
 * One entity found in one text.
 *
 * <p>Offsets come in two units. {@code start}/{@code end} count Unicode code points, as the server
 * sends them (and as Python indexes strings). {@code utf16Start}/{@code utf16End} are Java {@code
 * String} indices, so that {@code text.substring(e.utf16Start(), e.utf16End()).equals(e.text())}
 * for the text it was found in. The two differ once the text holds a character outside the Basic
 * Multilingual Plane (an emoji, a CJK Extension B ideograph), which takes two {@code char}s.
 *
 * @param label entity type, e.g. {@code "LOC"}
 * @param start first code point of the span
 * @param end one past its last code point
 * @param text the span's characters
 * @param score the model's confidence, in [0, 1]: the lowest per-character tag probability
 * @param utf16Start first {@code char} index of the span in the original Java string
 * @param utf16End one past its last {@code char} index
 */
public record Entity(String label, int start, int end, String text, float score, int utf16Start, int utf16End) {}
