-module(imgrebar).
-export([hello/0]).

hello() -> node().
