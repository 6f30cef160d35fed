package syncengine_test

import (
	"testing"

	"github.com/tidemark/tidemark/db/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }
