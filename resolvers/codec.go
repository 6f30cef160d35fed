package resolvers

import (
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/tidemark/tidemark/collections"
)

// A codec moves documents between a collection's generated GraphQL structs
// and collections.Document, matching struct fields to collection fields by
// their JSON names (which gqlgen takes from the schema). One codec per
// struct type serves every collection, so a new collection needs no
// translation code of its own.
type codec struct {
	collection *collections.Collection
	id         []int
	deleted    []int
	updatedAt  []int         // absent (nil) is allowed for input types
	fields     map[int][]int // collection field index → struct field index
}

var codecs sync.Map // reflect.Type → *codec

func codecFor(c *collections.Collection, typ reflect.Type) *codec {
	if k, ok := codecs.Load(typ); ok {
		return k.(*codec)
	}
	k := &codec{collection: c, fields: map[int][]int{}}
	byName := map[string][]int{}
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name, _, _ := cutComma(f.Tag.Get("json"))
		byName[name] = f.Index
	}
	k.id, k.deleted, k.updatedAt = byName["id"], byName["deleted"], byName["updatedAt"]
	if k.id == nil || k.deleted == nil {
		panic(fmt.Sprintf("%v: no id or deleted field for collection %s", typ, c.Name))
	}
	for i, f := range c.Fields {
		idx, ok := byName[f.Name]
		if !ok {
			if f.ServerOwned {
				continue // input types may leave server-owned fields out
			}
			panic(fmt.Sprintf("%v: no field %q for collection %s", typ, f.Name, c.Name))
		}
		k.fields[i] = idx
	}
	codecs.Store(typ, k)
	return k
}

func cutComma(tag string) (string, string, bool) {
	for i := 0; i < len(tag); i++ {
		if tag[i] == ',' {
			return tag[:i], tag[i+1:], true
		}
	}
	return tag, "", false
}

// toDocument reads a generated struct (or pointer to one) into a Document.
// Values keep their Go kinds (int64, float64, string, bool, time.Time);
// validation happens in the sync engine.
func toDocument[T any](c *collections.Collection, in *T) collections.Document {
	v := reflect.ValueOf(in).Elem()
	k := codecFor(c, v.Type())
	doc := collections.Document{
		ID:      v.FieldByIndex(k.id).String(),
		Deleted: v.FieldByIndex(k.deleted).Bool(),
		Fields:  make(map[string]any, len(c.Fields)),
	}
	for i, f := range c.Fields {
		idx, ok := k.fields[i]
		if !ok {
			continue
		}
		doc.Fields[f.Name] = plainValue(v.FieldByIndex(idx))
	}
	return doc
}

func plainValue(v reflect.Value) any {
	if v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return nil
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Int, reflect.Int32, reflect.Int64:
		return v.Int()
	case reflect.Float64, reflect.Float32:
		return v.Float()
	case reflect.Bool:
		return v.Bool()
	}
	return v.Interface() // time.Time
}

// fromDocument builds a generated output struct from a Document.
func fromDocument[T any](c *collections.Collection, doc collections.Document) *T {
	return fromDocumentWith[T](codecFor(c, reflect.TypeFor[T]()), c, doc)
}

func fromDocumentWith[T any](k *codec, c *collections.Collection, doc collections.Document) *T {
	out := new(T)
	v := reflect.ValueOf(out).Elem()
	v.FieldByIndex(k.id).SetString(doc.ID)
	v.FieldByIndex(k.deleted).SetBool(doc.Deleted)
	if k.updatedAt != nil {
		setValue(v.FieldByIndex(k.updatedAt), doc.UpdatedAt)
	}
	for i, f := range c.Fields {
		if idx, ok := k.fields[i]; ok {
			setValue(v.FieldByIndex(idx), doc.Fields[f.Name])
		}
	}
	return out
}

// setValue stores a document value in a model's field. The common field
// types are written through a typed pointer: no reflect.New and no boxing
// per field (the read API converts hundreds of documents per response, a
// pull page a thousand); anything else (enums, named types) goes through
// reflection.
func setValue(dst reflect.Value, val any) {
	if val == nil {
		dst.SetZero()
		return
	}
	switch p := dst.Addr().Interface().(type) {
	case *string:
		if x, ok := val.(string); ok {
			*p = x
			return
		}
	case **string:
		if x, ok := val.(string); ok {
			*p = &x
			return
		}
	case *int:
		if x, ok := val.(int64); ok {
			*p = int(x)
			return
		}
	case **int:
		if x, ok := val.(int64); ok {
			n := int(x)
			*p = &n
			return
		}
	case *int64:
		if x, ok := val.(int64); ok {
			*p = x
			return
		}
	case **int64:
		if x, ok := val.(int64); ok {
			*p = &x
			return
		}
	case *float64:
		if x, ok := val.(float64); ok {
			*p = x
			return
		}
	case **float64:
		if x, ok := val.(float64); ok {
			*p = &x
			return
		}
	case *bool:
		if x, ok := val.(bool); ok {
			*p = x
			return
		}
	case **bool:
		if x, ok := val.(bool); ok {
			*p = &x
			return
		}
	case *time.Time:
		if x, ok := val.(time.Time); ok {
			*p = x
			return
		}
	case **time.Time:
		if x, ok := val.(time.Time); ok {
			*p = &x
			return
		}
	}
	setValueReflect(dst, val)
}

func setValueReflect(dst reflect.Value, val any) {
	target := dst
	if dst.Kind() == reflect.Pointer {
		target = reflect.New(dst.Type().Elem()).Elem()
	}
	switch x := val.(type) {
	case string:
		target.SetString(x)
	case int64:
		target.SetInt(x)
	case float64:
		target.SetFloat(x)
	case bool:
		target.SetBool(x)
	case time.Time:
		target.Set(reflect.ValueOf(x))
	default:
		panic(fmt.Sprintf("unsupported document value %T", val))
	}
	if dst.Kind() == reflect.Pointer {
		dst.Set(target.Addr())
	} else {
		dst.Set(target)
	}
}

func fromDocuments[T any](c *collections.Collection, docs []collections.Document) []*T {
	out := make([]*T, len(docs))
	if len(docs) == 0 {
		return out
	}
	k := codecFor(c, reflect.TypeFor[T]())
	for i, d := range docs {
		out[i] = fromDocumentWith[T](k, c, d)
	}
	return out
}
