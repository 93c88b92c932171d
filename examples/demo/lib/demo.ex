defmodule Demo do
  @moduledoc """
  The demo's whole API, meant to be called over the distribution (rpc) from any node:

      Demo.put("hello")   # kept by ONE process in the cluster, registered with :global
      Demo.get()          # the same value, read from any node
      Demo.info()         # this node, the peers it sees, the pg members, the value

  Nothing here forms the cluster: the beamfleet agent connects the nodes; :global
  and pg simply work once they are connected.
  """

  @value {__MODULE__, :value}

  @doc "Store `value` in the cluster-wide holder process (started on this node if none exists)."
  @spec put(term()) :: :ok
  def put(value) do
    case :global.whereis_name(@value) do
      :undefined ->
        case Agent.start(fn -> value end, name: {:global, @value}) do
          {:ok, _pid} -> :ok
          {:error, {:already_started, _pid}} -> put(value)
        end

      pid ->
        Agent.update(pid, fn _ -> value end)
    end
  end

  @doc "The value stored with `put/1` anywhere in the cluster, or nil."
  @spec get() :: term()
  def get do
    case :global.whereis_name(@value) do
      :undefined -> nil
      pid -> Agent.get(pid, & &1)
    end
  end

  @doc "The nodes whose Demo.Member is in the cluster-wide pg group, sorted."
  @spec members() :: [node()]
  def members do
    Demo.PG
    |> :pg.get_members(:demo)
    |> Enum.map(&node/1)
    |> Enum.uniq()
    |> Enum.sort()
  end

  @doc "A summary of this node's view of the cluster."
  @spec info() :: map()
  def info do
    %{node: node(), peers: Enum.sort(Node.list()), members: members(), value: get()}
  end
end
