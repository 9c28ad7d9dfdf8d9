/* Splitting a long regular expression into shorter ones that, together, match exactly where it
 * matches (see rx_split.c). */
#ifndef PC_WAF_RX_SPLIT_H
#define PC_WAF_RX_SPLIT_H

#include <stddef.h>

/* Splits the PCRE pattern `pat` at its alternations until every piece is at most `limit` bytes
 * long, or cannot be split further. A string holds a match of `pat` if and only if it holds a
 * match of one of the pieces. Returns the number of pieces (at least 2; *out, and each piece, to
 * free), 0 when `pat` is no longer than `limit`, has no alternation that splits exactly, or would
 * need more than `max` pieces, -1 out of memory. */
int waf_rx_split(const char *pat, size_t limit, size_t max, char ***out);

void waf_rx_split_free(char **pieces, int n);

#endif
