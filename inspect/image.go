package inspect

import (
	"github.com/crtool/crtool/images"
	"google.golang.org/protobuf/proto"
)

// imageKind is a kind of CRIU image that inspect decodes.
type imageKind = images.ImageKind

var (
	inventoryImage = images.InventoryImage
	pstreeImage    = images.PstreeImage
	coreImage      = images.CoreImage
	idsImage       = images.IdsImage
	fdinfoImage    = images.FdinfoImage
	filesImage     = images.FilesImage
	fsImage        = images.FsImage
	mmImage        = images.MmImage
	pagemapImage   = images.PagemapImage
	mountsImage    = images.MountsImage
	statsImage     = images.StatsImage
	memfdImage     = images.MemfdImage
	netnsImage     = images.NetnsImage
	tcpStreamImage = images.TCPStreamImage
)

// decodeImage decodes data, the content of the CRIU image member, naming
// the member in its error.
func decodeImage(member string, data []byte, kind imageKind) ([]proto.Message, error) {
	msgs, err := images.DecodeImage(data, kind)
	if err != nil {
		return nil, corruptImage(member, "%v", err)
	}
	return msgs, nil
}
