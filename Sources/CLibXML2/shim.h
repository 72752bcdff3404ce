#ifndef CONCLAVE_CLIBXML2_SHIM_H
#define CONCLAVE_CLIBXML2_SHIM_H
// Debian's libxml2 headers pull in ICU, which clashes with the toolchain's own
// copy; the parser never needs libxml2's ICU support, so switch it off first.
#include <libxml/xmlversion.h>
#undef LIBXML_ICU_ENABLED
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/SAX2.h>
#include <libxml/xmlerror.h>
#endif
