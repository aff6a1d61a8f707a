//go:build !unix

package main

import "errors"

var errNoCheck = errors.New("not checked on this system")

func lockHolder(string) (int, error) { return 0, errNoCheck }

func diskSpace(string) (uint64, uint64, error) { return 0, 0, errNoCheck }
