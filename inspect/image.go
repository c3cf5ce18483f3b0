package inspect

import (
	"google.golang.org/protobuf/proto"

	"github.com/crtool/crtool/internal/criuimg"
)

// imageKind is a kind of CRIU image that inspect decodes.
type imageKind = criuimg.Kind

var (
	inventoryImage = criuimg.Inventory
	pstreeImage    = criuimg.Pstree
	coreImage      = criuimg.Core
	idsImage       = criuimg.Ids
	fdinfoImage    = criuimg.Fdinfo
	filesImage     = criuimg.Files
	fsImage        = criuimg.Fs
	mmImage        = criuimg.Mm
	pagemapImage   = criuimg.Pagemap
	mountsImage    = criuimg.Mounts
	statsImage     = criuimg.Stats
	memfdImage     = criuimg.Memfd
	netnsImage     = criuimg.Netns
	tcpStreamImage = criuimg.TCPStream
)

// decodeImage decodes data, the content of the CRIU image member, naming
// the member in its error.
func decodeImage(member string, data []byte, kind imageKind) ([]proto.Message, error) {
	msgs, err := criuimg.Decode(data, kind)
	if err != nil {
		return nil, corruptImage(member, "%v", err)
	}
	return msgs, nil
}
