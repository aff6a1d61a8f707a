// Command mcptest is a fake MCP server for moltbot's tests, built with the
// go-sdk's server side and run as a process of its own (the node never
// links go-sdk): "mcptest stdio TOOLS" serves on stdin and stdout;
// "mcptest http TOOLS [HEADER VALUE]" listens on 127.0.0.1 (a random
// port), prints its streamable HTTP endpoint's URL as its first line and
// serves there, refusing requests without the header when one is given.
// TOOLS is a comma-separated list of the tools below to serve ("all": every one).
//
// Its tools: echo {text} answers "echo: <text>"; hang waits until the
// client gives up; big answers 200 KB; fail answers an error result.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

type echoIn struct {
	Text string `json:"text" jsonschema:"the text to echo"`
}

type none struct{}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

func server(tools string) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "mcptest", Version: "1"}, nil)
	serves := func(name string) bool {
		return tools == "all" || slices.Contains(strings.Split(tools, ","), name)
	}
	if serves("echo") {
		addEcho(s)
	}
	if serves("hang") {
		addHang(s)
	}
	if serves("big") {
		addBig(s)
	}
	if serves("fail") {
		addFail(s)
	}
	if tools == "flood" {
		addFlood(s)
	}
	return s
}

// addFlood lists what a hostile server might: thousands of tools whose
// names no model takes, and thousands more with large descriptions (the
// worker must keep its load line bounded whatever a server lists).
func addFlood(s *mcp.Server) {
	long := strings.Repeat("a tool that says a great deal about itself <&> ", 80)
	for i := range 3000 {
		mcp.AddTool(s, &mcp.Tool{Name: fmt.Sprintf("bad name %d", i), Description: "x"},
			func(ctx context.Context, _ *mcp.CallToolRequest, _ none) (*mcp.CallToolResult, any, error) {
				return text("x"), nil, nil
			})
		mcp.AddTool(s, &mcp.Tool{Name: fmt.Sprintf("t%d", i), Description: long},
			func(ctx context.Context, _ *mcp.CallToolRequest, _ none) (*mcp.CallToolResult, any, error) {
				return text("x"), nil, nil
			})
	}
}

func addEcho(s *mcp.Server) {
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Echoes the text it is given."},
		func(ctx context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
			return text("echo: " + in.Text), nil, nil
		})
}

func addHang(s *mcp.Server) {
	mcp.AddTool(s, &mcp.Tool{Name: "hang", Description: "Never answers."},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ none) (*mcp.CallToolResult, any, error) {
			<-ctx.Done()
			return nil, nil, ctx.Err()
		})
}

func addBig(s *mcp.Server) {
	mcp.AddTool(s, &mcp.Tool{Name: "big", Description: "Answers 200 KB."},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ none) (*mcp.CallToolResult, any, error) {
			return text(strings.Repeat("0123456789", 20<<10)), nil, nil
		})
}

func addFail(s *mcp.Server) {
	mcp.AddTool(s, &mcp.Tool{Name: "fail", Description: "Fails."},
		func(ctx context.Context, _ *mcp.CallToolRequest, _ none) (*mcp.CallToolResult, any, error) {
			r := text("the fail tool failed, as it does")
			r.IsError = true
			return r, nil, nil
		})
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: mcptest stdio TOOLS | mcptest http TOOLS [HEADER VALUE]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "stdio":
		if err := server(os.Args[2]).Run(context.Background(), &mcp.StdioTransport{}); err != nil {
			fmt.Fprintln(os.Stderr, "mcptest:", err)
			os.Exit(1)
		}
	case "http":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "mcptest:", err)
			os.Exit(1)
		}
		s := server(os.Args[2])
		var h http.Handler = mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
		if len(os.Args) == 5 {
			name, want, inner := os.Args[3], os.Args[4], h
			h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get(name) != want {
					http.Error(w, "unauthorized", http.StatusUnauthorized)
					return
				}
				inner.ServeHTTP(w, r)
			})
		}
		fmt.Printf("http://%s/mcp\n", ln.Addr())
		if err := http.Serve(ln, h); err != nil {
			fmt.Fprintln(os.Stderr, "mcptest:", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: mcptest stdio TOOLS | mcptest http TOOLS [HEADER VALUE]")
		os.Exit(2)
	}
}
