defmodule Demo.Application do
  @moduledoc false
  use Application

  @impl true
  def start(_type, _args) do
    children = [
      # A pg scope: every node's Demo.Member joins the :demo group in it, so any node
      # can list the members of the whole cluster through plain OTP.
      %{id: Demo.PG, start: {:pg, :start_link, [Demo.PG]}},
      Demo.Member
    ]

    Supervisor.start_link(children, strategy: :one_for_one, name: Demo.Supervisor)
  end
end
