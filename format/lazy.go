package format

// LazyPagesFile is present in an archive whose process memory is not all in
// it: a post-copy dump (crtool dump --lazy-pages) serves the rest from its
// page server, which admits only a peer presenting Token.
const LazyPagesFile = "crtool-lazy-pages.json"

// LazyPages is LazyPagesFile's content.
type LazyPages struct {
	// PageServer is the ADDRESS:PORT the source serves the pages on.
	PageServer string `json:"page_server"`
	// Token authenticates the restoring side to the page server.
	Token string `json:"token"`
}
