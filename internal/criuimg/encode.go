package criuimg

import (
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/proto"
)

// Encode writes msgs as a CRIU image of kind, as CRIU frames it: the
// common magic (but for inventory.img), the image's, then each entry after
// its 32-bit size. crtool
// writes no images itself; tests build crafted ones with it.
func Encode(kind Kind, msgs ...proto.Message) ([]byte, error) {
	m, ok := magics.ByName[kind.Magic]
	if !ok {
		return nil, fmt.Errorf("unknown image kind %s", kind.Magic)
	}
	var b []byte
	if kind.Magic != Inventory.Magic {
		// inventory.img alone starts with its own magic.
		b = binary.LittleEndian.AppendUint32(b, uint32(magics.ByName["IMG_COMMON"]))
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(m))
	for _, msg := range msgs {
		data, err := proto.Marshal(msg)
		if err != nil {
			return nil, fmt.Errorf("encode %s entry: %w", kind.Magic, err)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(len(data)))
		b = append(b, data...)
	}
	return b, nil
}
