defmodule Demo.Member do
  @moduledoc "Joins the cluster-wide pg group and logs nodes coming and going."
  use GenServer
  require Logger

  def start_link(_arg), do: GenServer.start_link(__MODULE__, nil, name: __MODULE__)

  @impl true
  def init(nil) do
    :ok = :pg.join(Demo.PG, :demo, self())
    :ok = :net_kernel.monitor_nodes(true)
    Logger.info("demo node #{node()} up")
    {:ok, nil}
  end

  @impl true
  def handle_info({:nodeup, peer}, state) do
    Logger.info("nodeup #{peer}")
    {:noreply, state}
  end

  def handle_info({:nodedown, peer}, state) do
    Logger.info("nodedown #{peer}")
    {:noreply, state}
  end
end
